"""The Calls API as the reference documents it, checked against real responses of the running
system (every service a process, the carrier simulator behind the real twilio library) for
calls in every state and batches at every stage.

Each response goes through `reference.check`, which fails naming the field's path; the tests
also pin the documented mapping of carrier states and our own ends to `status` and `outcome`
(docs/api.md). States that only last a moment are held by the simulator, never by sleeping:
a call is kept `queued` by the simulator's create delay (the dialer is waiting on the carrier
to accept it), kept ringing or talking by the long-ringing and long-talking numbers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from calls_testing import unique_number
from calls_testing.system import SIM_ACCOUNT_SID, SIM_AUTH_TOKEN, System
from twilio.request_validator import RequestValidator

from tests.contract import reference
from tests.contract.reference import (
    BATCH_ACCEPTED,
    BATCH_STATUS,
    CALL_ACCEPTED,
    CALL_DETAIL,
    CALL_LIST,
    CALL_LOG_ITEM,
    OUTCOME_EXTENSIONS,
    OUTCOMES,
    check,
)

pytestmark = pytest.mark.integration

COMPLETES = "+14155551212"  # human answers, talks SIM_TALK_SECONDS
REFUSED = "+15005550001"  # 400 21211: invalid number
UNREACHABLE = "+15005550002"  # 400 21214
BUSY = "+15005550003"
NO_ANSWER = "+15005550004"
VOICEMAIL = "+15005550005"  # answered by a machine (the dialer asks for AMD)
FAILS = "+15005550006"  # initiated, then failed at the carrier
LONG_TALK = "+15005550007"  # talks 60 s until hung up
LONG_RING = "+15005550008"  # rings 60 s (digits may be appended)

DETAIL_ONLY = frozenset(CALL_DETAIL.fields) - frozenset(CALL_LOG_ITEM.fields) | {
    "error_code",
    "answered_by",
    # extensions of campaigns (#17)
    "variables",
    "metadata",
    "attempt",
    "previous_call_id",
    "first_call_id",
    "next_call_id",
    "not_before",
}

CONVERSATION = {
    "transcript": [dict(turn) for turn in reference.EXAMPLE_TRANSCRIPT],
    "provider_usage": reference.EXAMPLE_USAGE,
    "ended_by": "caller",
}


@dataclass
class Api:
    """The public API as one organization, each response checked against the reference."""

    http: aiohttp.ClientSession
    system: System
    org: str

    @property
    def base(self) -> str:
        return self.system.gateway

    async def _json(self, method: str, path: str, status: int, **kwargs: Any) -> Any:
        async with self.http.request(
            method, self.base + path, headers=self.system.auth(self.org), **kwargs
        ) as r:
            assert r.status == status, f"{method} {path}: {r.status} {await r.text()}"
            return await r.json()

    async def agent(self, name: str = "Support Agent") -> dict[str, Any]:
        body = {"name": name, "phone_number": unique_number()}
        agent: dict[str, Any] = await self._json("POST", "/agents", 201, json=body)
        return agent

    async def place(self, to_number: str, **fields: Any) -> dict[str, Any]:
        accepted = await self._json("POST", "/calls", 202, json={"to_number": to_number, **fields})
        check(CALL_ACCEPTED, accepted, "POST /calls")
        assert accepted["call_sid"] == "queued-" + uuid.UUID(accepted["call_id"]).hex[:12]
        return dict(accepted)

    async def call(self, call_id: str) -> dict[str, Any]:
        call: dict[str, Any] = await self._json("GET", f"/calls/{call_id}", 200)
        check(CALL_DETAIL, call, f"GET /calls/{call_id}")
        assert call["id"] == call["call_id"] == call_id
        return call

    async def calls(self, **params: str) -> dict[str, Any]:
        page: dict[str, Any] = await self._json("GET", "/calls", 200, params=params)
        check(CALL_LIST, page, f"GET /calls?{params}")
        return page

    async def listed(self, call_id: str) -> dict[str, Any]:
        """The call as GET /calls lists it (found by its number), checked like the detail."""
        detail = await self.call(call_id)
        page = await self.calls(search=detail["to_number"], page_size="100")
        [item] = [i for i in page["items"] if i["id"] == call_id]
        # the list item is the detail less the detail's own fields (a live call may have moved
        # on between the two reads: its identity is compared, not its progress)
        assert set(item) == set(detail) - DETAIL_ONLY
        for name in ("call_id", "direction", "from_number", "to_number", "created_at"):
            assert item[name] == detail[name], name
        return item

    async def until(
        self, call_id: str, done: Callable[[dict[str, Any]], bool], within: float = 40
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            call = await self.call(call_id)
            if done(call):
                return call
            assert time.monotonic() < deadline, f"not reached within {within}s: {call}"
            await asyncio.sleep(0.2)

    async def ended(self, call_id: str, within: float = 40) -> dict[str, Any]:
        return await self.until(call_id, lambda c: c["status"] in ("completed", "failed"), within)

    async def batch(self, to_numbers: list[str], **fields: Any) -> dict[str, Any]:
        accepted = await self._json(
            "POST", "/calls/batch", 202, json={"to_numbers": to_numbers, **fields}
        )
        check(BATCH_ACCEPTED, accepted, "POST /calls/batch")
        return dict(accepted)

    async def batch_status(self, batch_id: str) -> dict[str, Any]:
        batch: dict[str, Any] = await self._json("GET", f"/calls/batch/{batch_id}", 200)
        check(BATCH_STATUS, batch, f"GET /calls/batch/{batch_id}")
        assert_counts_agree(batch)
        return batch

    async def report_conversation(self, call_id: str) -> None:
        await self._json("POST", f"/calls/{call_id}/conversation", 202, json=CONVERSATION)


def assert_counts_agree(batch: dict[str, Any]) -> None:
    """The counts and the entries of one response never disagree (issue #13)."""
    entries = [c["status"] for c in batch["calls"]]
    for bucket in ("queued", "initiated", "failed", "canceled"):
        assert batch[bucket] == entries.count(bucket), (bucket, batch)
    assert len(entries) == batch["total"]
    for entry in batch["calls"]:
        # the reference's example: a SID once initiated, none while queued
        if entry["status"] == "queued":
            assert entry["call_sid"] is None, entry
        if entry["status"] == "initiated":
            assert entry["call_sid"] is not None, entry
        if entry["status"] == "failed":
            assert entry["error"], entry


def assert_mapped(
    call: dict[str, Any], status: str, outcome: str | None, carrier: str | None
) -> None:
    """docs/api.md's table: what `status`, `outcome` and `carrier_status` a state shows."""
    assert (call["status"], call["outcome"], call["carrier_status"]) == (status, outcome, carrier)
    if outcome is not None:
        assert outcome in OUTCOMES | OUTCOME_EXTENSIONS


async def wait_for(what: str, within: float, probe: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + within
    while not await probe():
        assert time.monotonic() < deadline, f"{what}: not within {within}s"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def carrier_slow_to_accept(
    http: aiohttp.ClientSession, system: System, seconds: float
) -> AsyncIterator[None]:
    """While inside, the carrier answers every create request only after `seconds`: a call
    being dialed stays queued (the carrier has not accepted it yet)."""
    await system.sim(http).set_faults(create_delay_seconds=seconds)
    try:
        yield
    finally:
        await system.sim(http).set_faults(create_delay_seconds=0)


@asynccontextmanager
async def dialer_stopped(system: System) -> AsyncIterator[None]:
    """While inside, the dialer is down: calls are accepted and stay queued."""
    system.stop("dialer")
    try:
        yield
    finally:
        await system.restart("dialer")


async def create_requests(http: aiohttp.ClientSession, system: System) -> int:
    return await system.sim(http).create_requests()


async def sim_update(http: aiohttp.ClientSession, system: System, sid: str, status: str) -> None:
    """Hang up (completed) or cancel a call at the carrier, as Twilio's API does."""
    sim = system.sim(http)
    async with http.post(
        f"{sim.account_uri}/Calls/{sid}.json", data={"Status": status}, headers=sim.auth
    ) as r:
        assert r.status == 200, await r.text()


async def carrier_webhook(
    http: aiohttp.ClientSession, system: System, path: str, params: dict[str, str]
) -> aiohttp.ClientResponse:
    """POST a webhook to the gateway signed as the carrier signs it."""
    signature = RequestValidator(SIM_AUTH_TOKEN).compute_signature(system.gateway + path, params)
    async with http.post(
        system.gateway + path, data=params, headers={"X-Twilio-Signature": signature}
    ) as r:
        await r.read()
        return r


@pytest.fixture
async def api(system: System, http: aiohttp.ClientSession) -> Api:
    return Api(http, system, f"org_contract_{uuid.uuid4().hex[:8]}")


# --- calls -----------------------------------------------------------------------------------


async def test_a_queued_call_has_its_placeholder_sid_and_its_queue_time_as_start(
    api: Api,
) -> None:
    agent = await api.agent()
    async with carrier_slow_to_accept(api.http, api.system, 4):
        before = await create_requests(api.http, api.system)
        accepted = await api.place(unique_number(), agent_id=agent["id"])

        async def being_dialed() -> bool:
            return await create_requests(api.http, api.system) > before

        # the dialer has asked the carrier; the carrier has not accepted it yet
        await wait_for("the dialer to dial", 10, being_dialed)
        call = await api.call(accepted["call_id"])
        item = await api.listed(accepted["call_id"])

    assert_mapped(call, "queued", None, None)
    assert call["call_sid"] == accepted["call_sid"]  # the same placeholder POST /calls gave
    assert call["start_time"] == call["created_at"]  # not started: when it was queued
    assert (call["end_time"], call["duration"], call["error_reason"]) == (None, None, None)
    assert (call["transcript"], call["provider_usage"], call["recording_url"]) == (
        None,
        None,
        None,
    )
    assert call["agent_name"] == "Support Agent"
    assert item["status"] == "queued"
    # and once the carrier accepts it, the call goes on as any other
    done = await api.ended(accepted["call_id"])
    assert_mapped(done, "completed", "completed", "completed")
    assert done["call_sid"].startswith("CA")


@pytest.mark.parametrize(
    ("to_number", "status", "outcome", "carrier_status", "dialed"),
    [
        (COMPLETES, "completed", "completed", "completed", True),
        (VOICEMAIL, "completed", "voicemail", "completed", True),
        (BUSY, "failed", "busy", "busy", True),
        (NO_ANSWER, "failed", "no_answer", "no-answer", True),
        (FAILS, "failed", "failed", "failed", True),
        (REFUSED, "failed", "invalid_number", None, False),
        (UNREACHABLE, "failed", "invalid_number", None, False),
    ],
    ids=[
        "completed",
        "voicemail",
        "busy",
        "no-answer",
        "failed-at-carrier",
        "refused",
        "unreachable",
    ],
)
async def test_an_ended_call_is_as_the_reference_says(
    api: Api,
    to_number: str,
    status: str,
    outcome: str,
    carrier_status: str | None,
    dialed: bool,
) -> None:
    accepted = await api.place(to_number, from_number=unique_number())

    call = await api.ended(accepted["call_id"])
    await api.listed(accepted["call_id"])

    assert_mapped(call, status, outcome, carrier_status)
    assert call["end_time"] is not None
    assert call["call_sid"].startswith("CA") == dialed
    if not dialed:  # never dialed: the placeholder stays, and the carrier's message says why
        assert call["call_sid"] == accepted["call_sid"]
        assert call["start_time"] == call["created_at"]
        assert call["error_reason"]
    if status == "completed":
        assert isinstance(call["duration"], float)
        assert call["error_reason"] is None
    else:
        assert call["duration"] in (None, 0.0)  # none, or the carrier's CallDuration of 0
        assert call["error_reason"]
    assert call["transcript"] is None  # nothing reported


async def test_a_ringing_call_is_in_progress_until_the_carrier_ends_it(api: Api) -> None:
    accepted = await api.place(LONG_RING, from_number=unique_number())

    ringing = await api.until(accepted["call_id"], lambda c: c["carrier_status"] == "ringing")
    await api.listed(accepted["call_id"])
    assert_mapped(ringing, "in-progress", None, "ringing")
    assert ringing["call_sid"].startswith("CA")
    assert ringing["end_time"] is None

    await sim_update(api.http, api.system, ringing["call_sid"], "canceled")
    canceled = await api.ended(accepted["call_id"])
    assert_mapped(canceled, "failed", "canceled", "canceled")


async def test_a_dialed_call_not_yet_reported_on_is_in_progress(api: Api) -> None:
    """Callbacks lost: the call shows what the dialer knows, the carrier's SID."""
    await api.system.sim(api.http).set_faults(drop_callbacks=True)
    try:
        accepted = await api.place(LONG_RING + "1", from_number=unique_number())
        dialed = await api.until(accepted["call_id"], lambda c: c["call_sid"].startswith("CA"))
        await api.listed(accepted["call_id"])
    finally:
        await api.system.sim(api.http).set_faults(drop_callbacks=False)
    # the carrier's resource says queued when created; asking the carrier may have found more
    assert dialed["status"] == "in-progress"
    assert dialed["carrier_status"] in ("queued", "initiated", "ringing")
    await sim_update(api.http, api.system, dialed["call_sid"], "canceled")
    assert_mapped(await api.ended(accepted["call_id"]), "failed", "canceled", "canceled")


async def test_a_talking_call_is_in_progress_and_completed_once_hung_up(api: Api) -> None:
    accepted = await api.place(LONG_TALK, from_number=unique_number())

    talking = await api.until(accepted["call_id"], lambda c: c["carrier_status"] == "in-progress")
    await api.listed(accepted["call_id"])
    assert_mapped(talking, "in-progress", None, "in-progress")
    # the carrier's start, never before it was queued (its timestamps are whole seconds)
    assert talking["start_time"] >= talking["created_at"]

    await sim_update(api.http, api.system, talking["call_sid"], "completed")
    done = await api.ended(accepted["call_id"])
    assert_mapped(done, "completed", "completed", "completed")
    assert isinstance(done["duration"], float)


async def test_a_call_with_transcript_and_recording(api: Api) -> None:
    agent = await api.agent()
    accepted = await api.place(unique_number(), agent_id=agent["id"])

    recorded = await api.until(accepted["call_id"], lambda c: c["recording_url"] is not None)
    assert recorded["transcript"] is None  # recorded, no conversation reported yet
    await api.report_conversation(accepted["call_id"])
    call = await api.until(accepted["call_id"], lambda c: c["transcript"] is not None)
    await api.listed(accepted["call_id"])

    assert call["transcript"] == CONVERSATION["transcript"]
    assert call["provider_usage"] == CONVERSATION["provider_usage"]
    assert call["recording_url"] == f"call-{call['call_sid']}.wav"
    assert_mapped(call, "completed", "caller_hangup", "completed")
    async with api.http.get(
        f"{api.base}/calls/{accepted['call_id']}/recording", headers=api.system.auth(api.org)
    ) as r:
        assert r.status == 200
        assert r.content_type == "audio/wav"
        assert (await r.read())[:4] == b"RIFF"


async def test_an_inbound_call_while_connected_and_once_ended(api: Api) -> None:
    agent = await api.agent("Front Desk")
    params = {
        "AccountSid": SIM_ACCOUNT_SID,
        "CallSid": "CA" + uuid.uuid4().hex,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": unique_number(),
        "To": agent["phone_number"],
    }
    answered = await carrier_webhook(api.http, api.system, "/webhooks/twilio/voice", params)
    assert answered.status == 200

    [item] = (await api.calls(direction="inbound", search=params["From"]))["items"]
    connected = await api.call(item["id"])
    assert_mapped(connected, "in-progress", None, "ringing")
    assert (connected["direction"], connected["call_sid"]) == ("inbound", params["CallSid"])
    assert connected["agent_name"] == "Front Desk"

    done = {**params, "CallStatus": "completed", "CallDuration": "42", "SequenceNumber": "1"}
    reported = await carrier_webhook(api.http, api.system, "/webhooks/twilio/status", done)
    assert reported.status == 204
    ended = await api.ended(item["id"])
    assert_mapped(ended, "completed", "completed", "completed")
    assert ended["duration"] == 42.0


async def test_every_list_filter_answers_the_references_shape(api: Api) -> None:
    placed = [await api.place(n, from_number=unique_number()) for n in (COMPLETES, BUSY, REFUSED)]
    for accepted in placed:
        await api.ended(accepted["call_id"])

    everything = await api.calls()
    assert everything["total"] == 3
    starts = [i["start_time"] for i in everything["items"]]
    assert starts == sorted(starts, reverse=True)  # ordered by start time, newest first
    for status in ("completed", "failed", "in-progress", "queued"):
        page = await api.calls(status=status)
        assert {i["status"] for i in page["items"]} <= {status}
    # completed and failed are statuses as well as outcomes: the status wins
    for outcome in sorted(OUTCOMES | OUTCOME_EXTENSIONS - {"completed", "failed"}):
        page = await api.calls(status=outcome)
        assert {i["outcome"] for i in page["items"]} <= {outcome}
    assert (await api.calls(status="busy"))["total"] == 1
    assert (await api.calls(status="invalid_number"))["total"] == 1
    assert (await api.calls(direction="outbound"))["total"] == 3
    assert (await api.calls(direction="inbound"))["total"] == 0
    assert (await api.calls(search=BUSY))["total"] == 1
    assert (await api.calls(page="2", page_size="2"))["items"] != []


async def test_a_carrier_status_as_filter_is_a_422_naming_it(api: Api) -> None:
    for word in ("ringing", "initiated"):
        error = await api._json("GET", "/calls", 422, params={"status": word})
        assert f"'{word}' is a carrier status" in error["error"]["details"][0]["message"]


# --- batches ---------------------------------------------------------------------------------


async def test_a_batch_queued_then_in_progress_then_completed(api: Api) -> None:
    numbers = [unique_number(), unique_number(), REFUSED]
    async with carrier_slow_to_accept(api.http, api.system, 3):
        before = await create_requests(api.http, api.system)
        accepted = await api.batch(numbers, from_number=unique_number())

        async def being_dialed() -> bool:
            return await create_requests(api.http, api.system) > before

        await wait_for("the dialer to dial", 10, being_dialed)
        queued = await api.batch_status(accepted["batch_id"])
    assert (queued["status"], queued["queued"]) == ("queued", 3)
    assert [c["to_number"] for c in queued["calls"]] == numbers
    assert {c["call_status"] for c in queued["calls"]} == {"queued"}

    deadline = time.monotonic() + 40
    seen = {queued["status"]}
    while True:
        batch = await api.batch_status(accepted["batch_id"])
        seen.add(batch["status"])
        ended = all(c["call_status"] in ("completed", "failed") for c in batch["calls"])
        if batch["status"] == "completed" and ended:
            break
        assert time.monotonic() < deadline, batch
        await asyncio.sleep(0.1)
    assert (batch["queued"], batch["initiated"], batch["failed"]) == (0, 2, 1)
    refused = batch["calls"][2]
    assert (refused["status"], refused["call_sid"], refused["outcome"]) == (
        "failed",
        None,
        "invalid_number",
    )
    # initiated stays initiated once the call completed: counts and entries agree
    assert [c["status"] for c in batch["calls"][:2]] == ["initiated", "initiated"]
    assert [c["call_status"] for c in batch["calls"][:2]] == ["completed", "completed"]


async def test_a_canceled_batch_and_its_canceled_calls(api: Api) -> None:
    def long_ringing(count: int) -> list[str]:
        return [f"{LONG_RING}{uuid.uuid4().int % 1000:03d}" for _ in range(count)]

    # dialed and ringing when the cancel comes: canceled at the carrier
    accepted = await api.batch(long_ringing(2), from_number=unique_number())

    async def all_ringing() -> bool:
        batch = await api.batch_status(accepted["batch_id"])
        return all(c["carrier_status"] == "ringing" for c in batch["calls"])

    await wait_for("the batch's calls to ring", 20, all_ringing)
    ringing = await api.batch_status(accepted["batch_id"])
    assert (ringing["status"], ringing["initiated"]) == ("completed", 2)  # every call dialed
    assert {c["call_status"] for c in ringing["calls"]} == {"in-progress"}
    await api._json("POST", f"/calls/batch/{accepted['batch_id']}/cancel", 202)
    first = await batch_settled(api, accepted["batch_id"])
    assert [c["status"] for c in first["calls"]] == ["canceled", "canceled"]
    assert {c["carrier_status"] for c in first["calls"]} == {"canceled"}
    assert all(c["call_sid"] for c in first["calls"])  # they had been dialed

    # not dialed yet when the cancel comes (the dialer is down): canceled before dialing
    async with dialer_stopped(api.system):
        second = await api.batch(long_ringing(5), from_number=unique_number())
        waiting = await api.batch_status(second["batch_id"])
        assert (waiting["status"], waiting["queued"]) == ("queued", 5)
        await api._json("POST", f"/calls/batch/{second['batch_id']}/cancel", 202)
        asked = await api.batch_status(second["batch_id"])
        assert (asked["status"], asked["queued"]) == ("canceled", 5)  # the dialer will cancel
    later = await batch_settled(api, second["batch_id"])
    # the restarted dialer takes the waiting cancel before it dials: none of them is dialed
    assert later["canceled"] == 5
    assert all(c["carrier_status"] is None for c in later["calls"]), later["calls"]

    for batch in (first, later):
        assert batch["status"] == "canceled"
        for entry in batch["calls"]:
            call = await api.call(entry["call_id"])
            assert_mapped(call, "failed", "canceled", entry["carrier_status"])
            assert entry["error"]
            assert call["error_reason"]
            if entry["carrier_status"] is None:  # never dialed: no SID, the placeholder
                assert entry["call_sid"] is None
                assert call["call_sid"].startswith("queued-")
                assert call["start_time"] == call["created_at"]


async def batch_settled(api: Api, batch_id: str, within: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        batch = await api.batch_status(batch_id)
        if all(c["call_status"] in ("completed", "failed") for c in batch["calls"]):
            return batch
        assert time.monotonic() < deadline, batch
        await asyncio.sleep(0.2)
