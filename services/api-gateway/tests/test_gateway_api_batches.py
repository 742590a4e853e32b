"""Integration: batches: placing them (dedup, per-entry validation, limits), reading them back
through the call log, and canceling them."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from calls_events import CallFailed, CallInitiated, Envelope, call_stream
from calls_platform import eventstore
from calls_testing.events import requests_in

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Gateway

pytestmark = pytest.mark.integration


async def place_batch(gateway: Gateway, org: str, numbers: list[str]) -> dict[str, Any]:
    response = await gateway.post_json(
        "/calls/batch", org, {"to_numbers": numbers, "from_number": gateway.number()}
    )
    assert response.status == 202, await response.text()
    batch: dict[str, Any] = await response.json()
    return batch


async def test_batch_answers_202_and_drops_duplicates(gateway: Gateway, org: str) -> None:
    a, b, c = gateway.number(), gateway.number(), gateway.number()
    caller = gateway.number()
    head = await gateway.head()
    response = await gateway.post_json(
        "/calls/batch", org, {"to_numbers": [a, b, a, c, b, a], "from_number": caller}
    )
    assert response.status == 202
    answer = await response.json()
    assert re.fullmatch(r"batch-[0-9a-f]{32}", answer["batch_id"])
    assert answer == {
        "batch_id": answer["batch_id"],
        "total": 3,
        "status": "queued",
        "duplicates_dropped": 3,
    }

    # one event: the batch, carrying its calls (the dialer opens each call's stream)
    [requested] = await gateway.events_after(head)
    assert requested.event_type == "BatchRequested"
    assert requested.stream_id == answer["batch_id"]
    assert requested.organization_id == org
    assert requested.data["total"] == 3
    assert requested.data["duplicates_dropped"] == 3
    assert requested.data["from_number"] == caller
    assert [c["to_number"] for c in requested.data["calls"]] == [a, b, c]
    calls = requests_in([requested])
    assert [c.data["to_number"] for c in calls] == [a, b, c]
    assert [c.data["batch_index"] for c in calls] == [0, 1, 2]
    assert {c.data["batch_id"] for c in calls} == {answer["batch_id"]}
    assert {c.data["from_number"] for c in calls} == {caller}
    assert len({c.data["call_id"] for c in calls}) == len({c.stream_id for c in calls}) == 3
    assert {e.organization_id for e in calls} == {org}
    assert {e.correlation_id for e in calls} == {requested.correlation_id}


async def test_batch_resolves_caller_id_like_a_single_call(gateway: Gateway, org: str) -> None:
    agent = await (
        await gateway.post_json("/agents", org, {"name": "Ada", "phone_number": gateway.number()})
    ).json()
    head = await gateway.head()
    response = await gateway.post_json(
        "/calls/batch", org, {"to_numbers": [gateway.number()], "agent_id": agent["id"]}
    )
    assert response.status == 202
    [batch_requested] = await gateway.events_after(head)
    [call_requested] = requests_in([batch_requested])
    assert batch_requested.data["from_number"] == agent["phone_number"]
    assert batch_requested.data["agent_id"] == agent["id"]
    assert call_requested.data["agent_name"] == "Ada"


async def assert_422(gateway: Gateway, response: Any, fields: list[str], head: object) -> None:
    assert response.status == 422, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == fields
    assert await gateway.head() == head, "a refused batch must append no event"


async def test_invalid_entries_are_422_naming_each_index(gateway: Gateway, org: str) -> None:
    head = await gateway.head()
    numbers = [gateway.number(), gateway.number(), "555-0100", gateway.number(), 15551230000, ""]
    response = await gateway.post_json(
        "/calls/batch", org, {"to_numbers": numbers, "from_number": gateway.number()}
    )
    await assert_422(gateway, response, ["to_numbers.2", "to_numbers.4", "to_numbers.5"], head)


@pytest.mark.parametrize(
    "to_numbers", [[], "+14155550100", {"0": "+14155550100"}, None, 3], ids=repr
)
async def test_empty_or_non_list_to_numbers_is_422(
    gateway: Gateway, org: str, to_numbers: Any
) -> None:
    head = await gateway.head()
    response = await gateway.post_json(
        "/calls/batch", org, {"to_numbers": to_numbers, "from_number": gateway.number()}
    )
    await assert_422(gateway, response, ["to_numbers"], head)


async def test_more_than_max_batch_size_is_422(gateway: Gateway, org: str) -> None:
    limit = gateway.settings.max_batch_size
    head = await gateway.head()
    numbers = [gateway.number() for _ in range(limit + 1)]
    response = await gateway.post_json(
        "/calls/batch", org, {"to_numbers": numbers, "from_number": gateway.number()}
    )
    await assert_422(gateway, response, ["to_numbers"], head)


async def test_exactly_max_batch_size_is_accepted(gateway: Gateway, org: str) -> None:
    limit = gateway.settings.max_batch_size
    batch = await place_batch(gateway, org, [gateway.number() for _ in range(limit)])
    assert batch["total"] == limit


async def test_batch_without_resolvable_caller_id_is_422_on_from_number(
    gateway: Gateway, org: str
) -> None:
    head = await gateway.head()
    response = await gateway.post_json("/calls/batch", org, {"to_numbers": [gateway.number()]})
    await assert_422(gateway, response, ["from_number"], head)


async def test_batch_with_another_orgs_agent_is_422_on_agent_id(
    gateway: Gateway, org: str, other_org: str
) -> None:
    theirs = await (
        await gateway.post_json(
            "/agents", other_org, {"name": "theirs", "phone_number": gateway.number()}
        )
    ).json()
    head = await gateway.head()
    response = await gateway.post_json(
        "/calls/batch",
        org,
        {
            "to_numbers": [gateway.number()],
            "from_number": gateway.number(),
            "agent_id": theirs["id"],
        },
    )
    await assert_422(gateway, response, ["agent_id"], head)


async def test_batch_reads_back_right_after_the_202_in_submission_order(
    gateway: Gateway, org: str
) -> None:
    numbers = [gateway.number() for _ in range(5)]
    batch = await place_batch(gateway, org, [*numbers, numbers[0]])

    response = await gateway.get(f"/calls/batch/{batch['batch_id']}", org)
    assert response.status == 200, await response.text()
    read = await response.json()
    assert read["batch_id"] == batch["batch_id"]
    assert read["total"] == 5
    assert read["duplicates_dropped"] == 1
    assert read["queued"] + read["initiated"] + read["failed"] + read["canceled"] == read["total"]
    assert read["queued"] == 5
    assert read["status"] == "queued"
    assert [c["to_number"] for c in read["calls"]] == numbers
    assert {c["status"] for c in read["calls"]} == {"queued"}


async def test_another_orgs_batch_is_404(gateway: Gateway, org: str, other_org: str) -> None:
    batch = await place_batch(gateway, org, [gateway.number()])
    response = await gateway.get(f"/calls/batch/{batch['batch_id']}", other_org)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


@pytest.mark.parametrize("batch_id", [f"batch-{uuid.uuid4().hex}", "batch-nope", "x" * 40])
async def test_unknown_or_malformed_batch_is_404(gateway: Gateway, org: str, batch_id: str) -> None:
    response = await gateway.get(f"/calls/batch/{batch_id}", org)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


async def test_cancel_answers_202_and_appends_one_cancel_however_often_asked(
    gateway: Gateway, org: str
) -> None:
    batch = await place_batch(gateway, org, [gateway.number(), gateway.number()])
    batch_id = batch["batch_id"]
    for _ in range(2):
        response = await gateway.client.post(
            f"/calls/batch/{batch_id}/cancel", headers=gateway.auth(org)
        )
        assert response.status == 202
        assert await response.json() == {"batch_id": batch_id, "status": "canceled"}

    stream = await gateway.stream(batch_id)
    assert [e.event_type for e in stream] == ["BatchRequested", "BatchCancelRequested"]
    cancel = stream[1]
    assert cancel.organization_id == org
    assert cancel.data == {"batch_id": batch_id, "requested_by": "tester"}

    read = await (await gateway.get(f"/calls/batch/{batch_id}", org)).json()
    assert read["status"] == "canceled"


@pytest.mark.parametrize("batch_id", [f"batch-{uuid.uuid4().hex}", "batch-nope"])
async def test_cancel_unknown_batch_is_404_and_appends_nothing(
    gateway: Gateway, org: str, batch_id: str
) -> None:
    head = await gateway.head()
    response = await gateway.client.post(
        f"/calls/batch/{batch_id}/cancel", headers=gateway.auth(org)
    )
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
    assert await gateway.head() == head


async def test_cancel_another_orgs_batch_is_404_and_appends_nothing(
    gateway: Gateway, org: str, other_org: str
) -> None:
    batch = await place_batch(gateway, org, [gateway.number()])
    head = await gateway.head()
    response = await gateway.client.post(
        f"/calls/batch/{batch['batch_id']}/cancel", headers=gateway.auth(other_org)
    )
    assert response.status == 404
    assert await gateway.head() == head


async def _dial_every_call(gateway: Gateway, org: str, start: Any, *, fail: bool) -> None:
    """Append what the dialer would: each call placed (still ringing), or refused (ended)."""
    calls = requests_in(await gateway.events_after(start))
    assert len(calls) == 2
    async with gateway.pool.connection() as conn:
        await eventstore.append(
            conn,
            [
                Envelope.wrap(
                    CallFailed(call_id=uuid.UUID(c.data["call_id"]), error_message="refused")
                    if fail
                    else CallInitiated(
                        call_id=uuid.UUID(c.data["call_id"]), call_sid="CA" + "1" * 32
                    ),
                    stream_id=call_stream(uuid.UUID(c.data["call_id"])),
                    organization_id=org,
                )
                for c in calls
            ],
        )


async def test_cancel_of_a_batch_whose_calls_all_ended_is_409(gateway: Gateway, org: str) -> None:
    start = await gateway.head()
    batch = await place_batch(gateway, org, [gateway.number(), gateway.number()])
    await _dial_every_call(gateway, org, start, fail=True)
    head = await gateway.head()
    response = await gateway.client.post(
        f"/calls/batch/{batch['batch_id']}/cancel", headers=gateway.auth(org)
    )
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "conflict"
    assert await gateway.head() == head


async def test_cancel_of_a_dialed_batch_whose_calls_still_ring_is_accepted(
    gateway: Gateway, org: str
) -> None:
    """Every call was dialed, none has ended: the dialer can still cancel them at the carrier."""
    start = await gateway.head()
    batch = await place_batch(gateway, org, [gateway.number(), gateway.number()])
    await _dial_every_call(gateway, org, start, fail=False)
    response = await gateway.client.post(
        f"/calls/batch/{batch['batch_id']}/cancel", headers=gateway.auth(org)
    )
    assert response.status == 202
    stream = await gateway.stream(batch["batch_id"])
    assert [e.event_type for e in stream] == ["BatchRequested", "BatchCancelRequested"]


async def test_batch_with_the_same_idempotency_key_is_queued_once(
    gateway: Gateway, org: str
) -> None:
    body = {"to_numbers": [gateway.number(), gateway.number()], "from_number": gateway.number()}
    headers = {**gateway.auth(org), "Idempotency-Key": f"key-{uuid.uuid4()}"}
    before = await gateway.head()
    first = await gateway.client.post("/calls/batch", json=body, headers=headers)
    second = await gateway.client.post("/calls/batch", json=body, headers=headers)
    assert first.status == second.status == 202
    assert (await first.json())["batch_id"] == (await second.json())["batch_id"]
    [batch] = await gateway.events_after(before)  # one BatchRequested, carrying 2 calls
    assert len(batch.data["calls"]) == 2
