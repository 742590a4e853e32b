"""Integration: POST /calls (caller-ID resolution, the CallRequested event, every refusal) and
reading the call back through the call log."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from calls_testing.events import requests_in

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Gateway

pytestmark = pytest.mark.integration


async def create_agent(
    gateway: Gateway, org: str, name: str = "Ada", **fields: Any
) -> dict[str, Any]:
    response = await gateway.post_json(
        "/agents", org, {"name": name, "phone_number": gateway.number(), **fields}
    )
    assert response.status == 201, await response.text()
    agent: dict[str, Any] = await response.json()
    return agent


async def set_sip_default(gateway: Gateway, org: str, number: str) -> None:
    response = await gateway.client.put(
        "/sip-config", json={"default_from_number": number}, headers=gateway.auth(org)
    )
    assert response.status == 200


async def place(gateway: Gateway, org: str, body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """POST /calls expecting 202; returns the answer and the one event it appended."""
    head = await gateway.head()
    response = await gateway.post_json("/calls", org, body)
    assert response.status == 202, await response.text()
    answer: dict[str, Any] = await response.json()
    events = await gateway.events_after(head)
    assert [e.event_type for e in events] == ["CallRequested"]
    return answer, events[0]


async def test_place_call_answers_202_and_appends_exactly_one_call_requested(
    gateway: Gateway, org: str
) -> None:
    to, caller = gateway.number(), gateway.number()
    head = await gateway.head()
    response = await gateway.post_json("/calls", org, {"to_number": to, "from_number": caller})
    assert response.status == 202
    answer = await response.json()
    call_id = uuid.UUID(answer["call_id"])
    assert answer == {
        "call_id": str(call_id),
        "call_sid": "queued-" + str(call_id).replace("-", "")[:12],
        "status": "queued",
    }

    events = await gateway.events_after(head)
    assert len(events) == 1
    event = events[0]
    assert event.event_type == "CallRequested"
    assert event.stream_id == f"call-{call_id}"
    assert event.stream_version == 1
    assert event.organization_id == org
    assert event.correlation_id == response.headers["X-Correlation-ID"]
    assert event.data == {
        "call_id": str(call_id),
        "to_number": to,
        "from_number": caller,
        "agent_id": None,
        "agent_name": None,
        "batch_id": None,
        "batch_index": None,
        "record": True,
        "requested_by": "tester",
        # campaign extensions, all at their defaults
        "variables": {},
        "metadata": {},
        "schedule": None,
        "retry": None,
        "max_concurrency": None,
        "attempt": 1,
        "previous_call_id": None,
        "first_call_id": None,
    }


async def test_an_agent_with_recording_off_makes_unrecorded_calls_unless_a_call_asks(
    gateway: Gateway, org: str
) -> None:
    quiet = await create_agent(gateway, org, name="Quiet", recording_enabled=False)
    loud = await create_agent(gateway, org, name="Loud")
    cases = [
        ({"agent_id": quiet["id"]}, False),
        ({"agent_id": quiet["id"], "record": True}, True),
        ({"agent_id": loud["id"]}, True),
        ({"agent_id": loud["id"], "record": False}, False),
        ({"from_number": quiet["phone_number"]}, False),  # the number's agent decides
        ({"from_number": gateway.number()}, True),
        ({"from_number": gateway.number(), "record": False}, False),
    ]
    for body, recorded in cases:
        _, event = await place(gateway, org, {"to_number": gateway.number(), **body})
        assert event.data["record"] is recorded, body


async def test_a_batch_is_recorded_as_its_record_or_its_agent_says(
    gateway: Gateway, org: str
) -> None:
    quiet = await create_agent(gateway, org, name="Quiet", recording_enabled=False)
    for body, recorded in [({}, False), ({"record": True}, True)]:
        head = await gateway.head()
        response = await gateway.post_json(
            "/calls/batch",
            org,
            {"to_numbers": [gateway.number(), gateway.number()], "agent_id": quiet["id"], **body},
        )
        assert response.status == 202
        calls = requests_in(await gateway.events_after(head))
        assert [e.data["record"] for e in calls] == [recorded, recorded]


async def test_client_correlation_id_is_kept_on_the_event(gateway: Gateway, org: str) -> None:
    head = await gateway.head()
    response = await gateway.client.post(
        "/calls",
        json={"to_number": gateway.number(), "from_number": gateway.number()},
        headers={**gateway.auth(org), "X-Correlation-ID": "trace-123"},
    )
    assert response.status == 202
    assert response.headers["X-Correlation-ID"] == "trace-123"
    [event] = await gateway.events_after(head)
    assert event.correlation_id == "trace-123"


async def test_explicit_from_number_wins_over_agent_and_default(gateway: Gateway, org: str) -> None:
    agent = await create_agent(gateway, org)
    await set_sip_default(gateway, org, gateway.number())
    caller = gateway.number()
    _, event = await place(
        gateway,
        org,
        {"to_number": gateway.number(), "from_number": caller, "agent_id": agent["id"]},
    )
    assert event.data["from_number"] == caller
    assert event.data["agent_id"] == agent["id"]  # the agent still handles the call


async def test_agent_id_gives_the_agents_number_and_name(gateway: Gateway, org: str) -> None:
    agent = await create_agent(gateway, org, name="Grace")
    await set_sip_default(gateway, org, gateway.number())
    _, event = await place(gateway, org, {"to_number": gateway.number(), "agent_id": agent["id"]})
    assert event.data["from_number"] == agent["phone_number"]
    assert event.data["agent_id"] == agent["id"]
    assert event.data["agent_name"] == "Grace"


async def test_from_number_of_an_agent_selects_that_agent(gateway: Gateway, org: str) -> None:
    agent = await create_agent(gateway, org, name="Linus")
    await create_agent(gateway, org, name="someone else")
    _, event = await place(
        gateway, org, {"to_number": gateway.number(), "from_number": agent["phone_number"]}
    )
    assert event.data["from_number"] == agent["phone_number"]
    assert event.data["agent_id"] == agent["id"]
    assert event.data["agent_name"] == "Linus"


async def test_another_orgs_agent_number_as_from_number_selects_no_agent(
    gateway: Gateway, org: str, other_org: str
) -> None:
    theirs = await create_agent(gateway, other_org)
    _, event = await place(
        gateway, org, {"to_number": gateway.number(), "from_number": theirs["phone_number"]}
    )
    assert event.data["from_number"] == theirs["phone_number"]
    assert event.data["agent_id"] is None
    assert event.data["agent_name"] is None


async def test_without_from_number_or_agent_the_sip_default_is_used(
    gateway: Gateway, org: str
) -> None:
    default = gateway.number()
    await set_sip_default(gateway, org, default)
    _, event = await place(gateway, org, {"to_number": gateway.number()})
    assert event.data["from_number"] == default
    assert event.data["agent_id"] is None


async def test_sip_default_that_is_an_agents_number_selects_that_agent(
    gateway: Gateway, org: str
) -> None:
    agent = await create_agent(gateway, org)
    await set_sip_default(gateway, org, agent["phone_number"])
    _, event = await place(gateway, org, {"to_number": gateway.number()})
    assert event.data["from_number"] == agent["phone_number"]
    assert event.data["agent_id"] == agent["id"]


async def assert_refused(
    gateway: Gateway, response: Any, status: int, code: str, fields: list[str] | None, head: object
) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    error: dict[str, Any] = (await response.json())["error"]
    assert error["code"] == code
    assert error["message"]
    if fields is not None:
        assert [d["field"] for d in error["details"]] == fields
    assert await gateway.head() == head, "a refused request must append no event"
    return error


async def test_nothing_to_resolve_the_caller_id_from_is_422_on_from_number(
    gateway: Gateway, org: str
) -> None:
    await create_agent(gateway, org)  # having agents is not enough: none was chosen
    head = await gateway.head()
    response = await gateway.post_json("/calls", org, {"to_number": gateway.number()})
    error = await assert_refused(gateway, response, 422, "validation_error", ["from_number"], head)
    assert "sip-config" in error["message"]


async def test_cleared_sip_default_no_longer_resolves(gateway: Gateway, org: str) -> None:
    await set_sip_default(gateway, org, gateway.number())
    response = await gateway.client.put(
        "/sip-config", json={"default_from_number": None}, headers=gateway.auth(org)
    )
    assert response.status == 200
    head = await gateway.head()
    response = await gateway.post_json("/calls", org, {"to_number": gateway.number()})
    await assert_refused(gateway, response, 422, "validation_error", ["from_number"], head)


@pytest.mark.parametrize("whose", ["another org's", "unknown"])
async def test_agent_id_not_of_this_org_is_422_on_agent_id(
    gateway: Gateway, org: str, other_org: str, whose: str
) -> None:
    await set_sip_default(gateway, org, gateway.number())  # would resolve without the agent
    if whose == "unknown":
        agent_id = str(uuid.uuid4())
    else:
        agent_id = (await create_agent(gateway, other_org))["id"]
    head = await gateway.head()
    response = await gateway.post_json(
        "/calls", org, {"to_number": gateway.number(), "agent_id": agent_id}
    )
    await assert_refused(gateway, response, 422, "validation_error", ["agent_id"], head)


JSON = "application/json"
# body, Content-Type, status, error code, fields named in the error's details
BAD_BODIES: dict[str, tuple[bytes, str, int, str, list[str] | None]] = {
    "malformed json": (b'{"to_number": "+14155550100"', JSON, 400, "malformed_json", None),
    "not utf-8": (b'{"to_number": "\xff"}', JSON, 400, "malformed_json", None),
    "empty body": (b"", JSON, 400, "malformed_json", None),
    "deeply nested": (b"[" * 10_000, JSON, 400, "malformed_json", None),
    "integer too long to parse": (
        b'{"to_number": ' + b"1" * 5000 + b"}",
        JSON,
        400,
        "malformed_json",
        None,
    ),
    "array body": (b'[{"to_number": "+14155550100"}]', JSON, 422, "validation_error", ["body"]),
    "string body": (b'"+14155550100"', JSON, 422, "validation_error", ["body"]),
    "null body": (b"null", JSON, 422, "validation_error", ["body"]),
    "text/plain": (
        b'{"to_number": "+14155550100"}',
        "text/plain",
        415,
        "unsupported_media_type",
        None,
    ),
    "form": (
        b"to_number=%2B14155550100",
        "application/x-www-form-urlencoded",
        415,
        "unsupported_media_type",
        None,
    ),
}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "fields"),
    BAD_BODIES.values(),
    ids=BAD_BODIES.keys(),
)
async def test_unusable_body_is_refused_and_appends_nothing(
    gateway: Gateway,
    org: str,
    body: bytes,
    content_type: str,
    status: int,
    code: str,
    fields: list[str] | None,
) -> None:
    await set_sip_default(gateway, org, gateway.number())
    head = await gateway.head()
    response = await gateway.client.post(
        "/calls", data=body, headers={**gateway.auth(org), "Content-Type": content_type}
    )
    await assert_refused(gateway, response, status, code, fields, head)


async def test_json_content_type_with_charset_is_accepted(gateway: Gateway, org: str) -> None:
    head = await gateway.head()
    response = await gateway.client.post(
        "/calls",
        data=json.dumps({"to_number": gateway.number(), "from_number": gateway.number()}),
        headers={**gateway.auth(org), "Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status == 202
    assert len(await gateway.events_after(head)) == 1


INVALID_FIELDS = {
    "non-E.164 to_number": ({"to_number": "4155550100"}, ["to_number"]),
    "to_number as int": ({"to_number": 14155550100}, ["to_number"]),
    "missing to_number": ({"from_number": "+14155550100"}, ["to_number"]),
    "non-E.164 from_number": (
        {"to_number": "+14155550100", "from_number": "+1 (415)"},
        ["from_number"],
    ),
    "agent_id not a uuid": ({"to_number": "+14155550100", "agent_id": "ada"}, ["agent_id"]),
    "extra field": ({"to_number": "+14155550100", "url": "http://evil"}, ["url"]),
}


@pytest.mark.parametrize(("body", "fields"), INVALID_FIELDS.values(), ids=INVALID_FIELDS.keys())
async def test_invalid_field_is_422_naming_it_and_appends_nothing(
    gateway: Gateway, org: str, body: dict[str, Any], fields: list[str]
) -> None:
    await set_sip_default(gateway, org, gateway.number())
    head = await gateway.head()
    response = await gateway.post_json("/calls", org, body)
    await assert_refused(gateway, response, 422, "validation_error", fields, head)


async def test_oversized_body_is_413_json_and_appends_nothing(gateway: Gateway, org: str) -> None:
    await set_sip_default(gateway, org, gateway.number())
    body = {"to_number": gateway.number(), "padding": "x" * gateway.settings.max_body_bytes}
    head = await gateway.head()
    response = await gateway.post_json("/calls", org, body)
    await assert_refused(gateway, response, 413, "payload_too_large", None, head)


# --- reading the call back -----------------------------------------------------------------


async def test_call_reads_back_as_queued_right_after_the_202(gateway: Gateway, org: str) -> None:
    agent = await create_agent(gateway, org, name="Hopper")
    to = gateway.number()
    answer, _ = await place(gateway, org, {"to_number": to, "agent_id": agent["id"]})

    response = await gateway.get(f"/calls/{answer['call_id']}", org)
    assert response.status == 200, await response.text()
    call = await response.json()
    assert call["call_id"] == answer["call_id"]
    assert call["status"] == "queued"
    assert call["direction"] == "outbound"
    assert call["to_number"] == to
    assert call["from_number"] == agent["phone_number"]
    assert call["agent_id"] == agent["id"]
    assert call["agent_name"] == "Hopper"
    assert call["outcome"] is None


async def test_another_orgs_call_is_404(gateway: Gateway, org: str, other_org: str) -> None:
    answer, _ = await place(
        gateway, org, {"to_number": gateway.number(), "from_number": gateway.number()}
    )
    response = await gateway.get(f"/calls/{answer['call_id']}", other_org)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
    listed = await (await gateway.get("/calls", other_org)).json()
    assert listed["items"] == []


@pytest.mark.parametrize("call_id", ["not-a-uuid", "12345", "batch-" + "0" * 32, str(uuid.uuid4())])
async def test_malformed_or_unknown_call_id_is_404_json(
    gateway: Gateway, org: str, call_id: str
) -> None:
    response = await gateway.get(f"/calls/{call_id}", org)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


async def test_list_calls_shows_the_orgs_calls_newest_first(gateway: Gateway, org: str) -> None:
    first, _ = await place(
        gateway, org, {"to_number": gateway.number(), "from_number": gateway.number()}
    )
    second, _ = await place(
        gateway, org, {"to_number": gateway.number(), "from_number": gateway.number()}
    )
    response = await gateway.get("/calls", org)
    assert response.status == 200
    page = await response.json()
    assert page["total"] == 2
    assert [c["call_id"] for c in page["items"]] == [second["call_id"], first["call_id"]]
    assert {c["status"] for c in page["items"]} == {"queued"}


async def test_list_calls_passes_its_query_to_the_call_log(gateway: Gateway, org: str) -> None:
    to = gateway.number()
    await place(gateway, org, {"to_number": to, "from_number": gateway.number()})
    await place(gateway, org, {"to_number": gateway.number(), "from_number": gateway.number()})

    page = await (await gateway.get(f"/calls?search={to[1:]}&page_size=5", org)).json()
    assert [c["to_number"] for c in page["items"]] == [to]
    assert page["page_size"] == 5

    response = await gateway.get("/calls?page_size=0", org)
    assert response.status == 422
    assert [d["field"] for d in (await response.json())["error"]["details"]] == ["page_size"]


async def test_same_idempotency_key_and_body_gets_the_same_202_and_queues_once(
    gateway: Gateway, org: str
) -> None:
    body = {"to_number": gateway.number(), "from_number": gateway.number()}
    headers = {**gateway.auth(org), "Idempotency-Key": f"key-{uuid.uuid4()}"}
    before = await gateway.head()
    first = await gateway.client.post("/calls", json=body, headers=headers)
    second = await gateway.client.post("/calls", json=body, headers=headers)
    assert first.status == second.status == 202
    assert await first.json() == await second.json()
    assert len(await gateway.events_after(before)) == 1


async def test_idempotency_key_reused_with_another_body_is_422_and_queues_nothing(
    gateway: Gateway, org: str
) -> None:
    headers = {**gateway.auth(org), "Idempotency-Key": f"key-{uuid.uuid4()}"}
    sender = gateway.number()
    first = await gateway.client.post(
        "/calls", json={"to_number": gateway.number(), "from_number": sender}, headers=headers
    )
    assert first.status == 202
    before = await gateway.head()
    second = await gateway.client.post(
        "/calls", json={"to_number": gateway.number(), "from_number": sender}, headers=headers
    )
    assert second.status == 422
    assert (await second.json())["error"]["code"] == "idempotency_key_reused"
    assert await gateway.head() == before


async def test_idempotency_keys_are_per_organization(
    gateway: Gateway, org: str, other_org: str
) -> None:
    key = f"key-{uuid.uuid4()}"
    body = {"to_number": gateway.number(), "from_number": gateway.number()}
    first = await gateway.client.post(
        "/calls", json=body, headers={**gateway.auth(org), "Idempotency-Key": key}
    )
    second = await gateway.client.post(
        "/calls", json=body, headers={**gateway.auth(other_org), "Idempotency-Key": key}
    )
    assert first.status == second.status == 202
    assert (await first.json())["call_id"] != (await second.json())["call_id"]


async def test_failed_request_does_not_consume_its_idempotency_key(
    gateway: Gateway, org: str
) -> None:
    headers = {**gateway.auth(org), "Idempotency-Key": f"key-{uuid.uuid4()}"}
    body = {"to_number": gateway.number()}  # no caller ID resolves yet
    assert (await gateway.client.post("/calls", json=body, headers=headers)).status == 422
    sender = gateway.number()
    await gateway.client.put(
        "/sip-config", json={"default_from_number": sender}, headers=gateway.auth(org)
    )
    retried = await gateway.client.post("/calls", json=body, headers=headers)
    assert retried.status == 202
