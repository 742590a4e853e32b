"""Integration: the campaign extensions of the API: recipients with variables and metadata,
schedules and retries carried in each call's request (with the organization's default window),
clear 422s for what cannot be meant, pause and resume, the do-not-call list and the calling
policy, each scoped to its organization."""

from __future__ import annotations

from typing import Any

import pytest
from calls_testing.events import requests_in

pytestmark = pytest.mark.integration


async def requested_calls(gateway: Any, head: int) -> list[dict[str, Any]]:
    """The calls requested after `head`, one by one or in a batch's request."""
    return [e.data for e in requests_in(await gateway.events_after(head))]


async def test_recipients_carry_their_variables_metadata_and_zone_into_their_calls(
    gateway: Any, org: str
) -> None:
    a, b, c = gateway.number(), gateway.number(), gateway.number()
    head = await gateway.head()
    response = await gateway.post_json(
        "/calls/batch",
        org,
        {
            "to_numbers": [a],
            "recipients": [
                {"to_number": b, "variables": {"first_name": "Ada"}, "metadata": {"crm": 7}},
                {"to_number": c, "time_zone": "Asia/Tokyo"},
                {"to_number": a, "variables": {"dropped": "yes"}},  # a duplicate of to_numbers
            ],
            "from_number": gateway.number(),
            "schedule": {
                "end_at": "2030-01-01T00:00:00Z",
                "window": {"start": "09:00", "end": "20:00", "days": ["mon", "tue"]},
            },
            "retry": {"max_attempts": 3, "on": ["busy"], "delay_seconds": 60},
            "max_concurrency": 2,
        },
    )
    assert response.status == 202, await response.text()
    answer = await response.json()
    assert (answer["total"], answer["duplicates_dropped"]) == (3, 1)
    calls = await requested_calls(gateway, head)
    assert [(x["to_number"], x["variables"], x["metadata"]) for x in calls] == [
        (a, {}, {}),
        (b, {"first_name": "Ada"}, {"crm": 7}),
        (c, {}, {}),
    ]
    assert [x["schedule"]["window"]["time_zone"] for x in calls] == [
        "recipient",
        "recipient",
        "Asia/Tokyo",
    ]
    assert {x["schedule"]["end_at"] for x in calls} == {"2030-01-01T00:00:00Z"}
    assert {x["max_concurrency"] for x in calls} == {2}
    assert {x["retry"]["max_attempts"] for x in calls} == {3}


async def test_a_single_call_takes_variables_metadata_schedule_and_retry(
    gateway: Any, org: str
) -> None:
    head = await gateway.head()
    response = await gateway.post_json(
        "/calls",
        org,
        {
            "to_number": gateway.number(),
            "from_number": gateway.number(),
            "variables": {"order_id": "A-1"},
            "metadata": {"source": "crm", "tags": ["vip"]},
            "schedule": {"start_at": "2030-01-01T09:00:00+01:00"},
            "retry": {"max_attempts": 2},
        },
    )
    assert response.status == 202, await response.text()
    [call] = await requested_calls(gateway, head)
    assert call["variables"] == {"order_id": "A-1"}
    assert call["metadata"] == {"source": "crm", "tags": ["vip"]}
    assert call["schedule"]["start_at"] == "2030-01-01T08:00:00Z"
    assert call["retry"]["on"] == ["busy", "no_answer"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"variables": {"1st": "x"}}, "variables.1st.[key]"),
        ({"variables": {"name": 5}}, "variables.name"),
        ({"variables": {f"v{i}": "x" for i in range(51)}}, "variables"),
        ({"variables": {"long": "x" * 1001}}, "variables.long"),
        ({"metadata": {"blob": "x" * 9000}}, "metadata"),
        ({"schedule": {"window": {"start": "9am", "end": "20:00"}}}, "schedule.window.start"),
        (
            {"schedule": {"window": {"start": "09:00", "end": "20:00", "time_zone": "Mars/Base"}}},
            "schedule.window.time_zone",
        ),
        ({"schedule": {"start_at": "2030-01-01T09:00:00"}}, "schedule.start_at"),
        (
            {"schedule": {"start_at": "2030-01-02T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"}},
            "schedule",
        ),
        ({"retry": {"max_attempts": 6}}, "retry.max_attempts"),
        ({"retry": {"max_attempts": 2, "on": ["hangup"]}}, "retry.on.0"),
    ],
)
async def test_campaign_fields_that_cannot_be_meant_are_a_422_naming_them(
    gateway: Any, org: str, body: dict[str, Any], field: str
) -> None:
    head = await gateway.head()
    response = await gateway.post_json(
        "/calls", org, {"to_number": gateway.number(), "from_number": gateway.number(), **body}
    )
    assert response.status == 422, await response.text()
    fields = [d["field"] for d in (await response.json())["error"]["details"]]
    assert field in fields
    assert await gateway.events_after(head) == []


async def test_a_batch_with_neither_numbers_nor_recipients_is_a_422(gateway: Any, org: str) -> None:
    response = await gateway.post_json("/calls/batch", org, {"recipients": []})
    assert response.status == 422
    assert [d["field"] for d in (await response.json())["error"]["details"]] == ["to_numbers"]
    bad_zone = {"recipients": [{"to_number": gateway.number(), "time_zone": "Nowhere/Land"}]}
    response = await gateway.post_json("/calls/batch", org, bad_zone)
    assert response.status == 422
    assert [d["field"] for d in (await response.json())["error"]["details"]] == ["recipients.0"]


async def test_the_calling_policy_window_applies_to_calls_that_set_none(
    gateway: Any, org: str, other_org: str
) -> None:
    policy = {
        "window": {"start": "08:00", "end": "21:00"},
        "max_concurrency": 5,
        "daily_cap_per_number": 2,
    }
    response = await gateway.client.put("/calling-policy", json=policy, headers=gateway.auth(org))
    assert response.status == 200, await response.text()
    read = await (await gateway.get("/calling-policy", org)).json()
    assert read["window"]["start"] == "08:00"
    assert (read["max_concurrency"], read["daily_cap_per_number"]) == (5, 2)
    other = await (await gateway.get("/calling-policy", other_org)).json()
    assert other == {"window": None, "max_concurrency": None, "daily_cap_per_number": None}
    [set_event] = await gateway.stream(f"calling-policy-{org}")
    assert set_event.event_type == "CallingPolicySet"

    head = await gateway.head()
    for body in (
        {},
        {"schedule": {"window": {"start": "10:00", "end": "11:00", "time_zone": "UTC"}}},
    ):
        response = await gateway.post_json(
            "/calls", org, {"to_number": gateway.number(), "from_number": gateway.number(), **body}
        )
        assert response.status == 202
    default, own = await requested_calls(gateway, head)
    assert default["schedule"]["window"]["start"] == "08:00"
    assert own["schedule"]["window"]["start"] == "10:00"

    # read in the same query as the caller ID: a batch gets it too, another organization not
    head = await gateway.head()
    numbers = [gateway.number(), gateway.number()]
    for who in (org, other_org):
        response = await gateway.post_json(
            "/calls/batch", who, {"to_numbers": numbers, "from_number": gateway.number()}
        )
        assert response.status == 202, await response.text()
    calls = await requested_calls(gateway, head)
    starts = {
        c["batch_id"]: ((c["schedule"] or {}).get("window") or {}).get("start") for c in calls
    }
    assert sorted(start or "none" for start in starts.values()) == ["08:00", "none"]


async def test_the_do_not_call_list_is_the_organizations_own_and_announced_once(
    gateway: Any, org: str, other_org: str
) -> None:
    number = gateway.number()
    put = await gateway.client.put(
        f"/do-not-call/{number}", json={"reason": "asked us"}, headers=gateway.auth(org)
    )
    assert put.status == 201, await put.text()
    again = await gateway.client.put(f"/do-not-call/{number}", headers=gateway.auth(org))
    assert again.status == 200
    assert (await again.json())["reason"] == "asked us"
    listed = await (await gateway.get("/do-not-call", org)).json()
    assert (listed["total"], [i["number"] for i in listed["items"]]) == (1, [number])
    assert (await (await gateway.get("/do-not-call", other_org)).json())["total"] == 0
    gone = await gateway.client.delete(f"/do-not-call/{number}", headers=gateway.auth(other_org))
    assert gone.status == 404

    encoded = number.replace("+", "%2B")  # as a client that encodes the + sends it
    removed = await gateway.client.delete(f"/do-not-call/{encoded}", headers=gateway.auth(org))
    assert removed.status == 204
    assert (
        await gateway.client.delete(f"/do-not-call/{number}", headers=gateway.auth(org))
    ).status == 404
    events = await gateway.stream(f"do-not-call-{org}")
    assert [(e.event_type, e.data["number"]) for e in events] == [
        ("DoNotCallAdded", number),
        ("DoNotCallRemoved", number),
    ]


async def test_a_do_not_call_path_that_is_no_number_is_a_404(gateway: Any, org: str) -> None:
    response = await gateway.client.put("/do-not-call/12345", headers=gateway.auth(org))
    assert response.status == 404
    page = await gateway.get("/do-not-call?page_size=0", org)
    assert page.status == 422


async def test_pause_and_resume_append_once_each_however_often_asked(
    gateway: Any, org: str, other_org: str
) -> None:
    response = await gateway.post_json(
        "/calls/batch", org, {"to_numbers": [gateway.number()], "from_number": gateway.number()}
    )
    batch_id = (await response.json())["batch_id"]
    for _ in range(2):
        paused = await gateway.client.post(
            f"/calls/batch/{batch_id}/pause", headers=gateway.auth(org)
        )
        assert paused.status == 202, await paused.text()
        assert await paused.json() == {"batch_id": batch_id, "status": "queued", "paused": True}
    read = await (await gateway.get(f"/calls/batch/{batch_id}", org)).json()
    assert read["paused"] is True
    assert read["status"] == "queued"  # the reference's vocabulary stays
    theirs = await gateway.client.post(
        f"/calls/batch/{batch_id}/pause", headers=gateway.auth(other_org)
    )
    assert theirs.status == 404
    for _ in range(2):
        resumed = await gateway.client.post(
            f"/calls/batch/{batch_id}/resume", headers=gateway.auth(org)
        )
        assert resumed.status == 202
    stream = await gateway.stream(batch_id)
    assert [e.event_type for e in stream] == ["BatchRequested", "BatchPaused", "BatchResumed"]


async def test_a_canceled_batch_cannot_be_paused(gateway: Any, org: str) -> None:
    response = await gateway.post_json(
        "/calls/batch", org, {"to_numbers": [gateway.number()], "from_number": gateway.number()}
    )
    batch_id = (await response.json())["batch_id"]
    await gateway.client.post(f"/calls/batch/{batch_id}/cancel", headers=gateway.auth(org))
    paused = await gateway.client.post(f"/calls/batch/{batch_id}/pause", headers=gateway.auth(org))
    assert paused.status == 409
