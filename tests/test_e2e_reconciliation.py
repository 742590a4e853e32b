"""No call stuck forever, through every service as a real process: a dialer killed while the
carrier was creating its call, the gateway down while calls end, and a batch canceled while
its calls ring. The carrier simulator counts every dial; calls are told apart by the call id
in their status-callback URL."""

from __future__ import annotations

import asyncio
import base64
import signal
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from calls_events import TERMINAL_CALL_STATUSES
from calls_testing import new_org_id, unique_number
from calls_testing.plugin import AmqpFactory, DatabaseFactory
from calls_testing.reads import read_json
from calls_testing.system import System
from carrier_sim.client import SimCall

from tests.conftest import e2e_system, get_call, running

pytestmark = pytest.mark.integration

TERMINAL = TERMINAL_CALL_STATUSES
LONG_RING = "+15005550008"  # rings for SIM_LONG_RING_SECONDS (60 s), then no-answer


async def dialed(http: aiohttp.ClientSession, system: System, call_id: str) -> list[SimCall]:
    """The carrier's calls placed for our call (its id is in the status-callback URL)."""
    calls = await system.sim(http).calls()
    return [c for c in calls if f"call_id={call_id}&" in (c["status_callback"] or "")]


async def carrier_call(http: aiohttp.ClientSession, system: System, sid: str) -> dict[str, Any]:
    """The call as the carrier's REST API shows it (status, duration, answered_by)."""
    env = system.services["simulator"].env
    token = base64.b64encode(f"{env['SIM_ACCOUNT_SID']}:{env['SIM_AUTH_TOKEN']}".encode())
    url = f"{system.simulator}/2010-04-01/Accounts/{env['SIM_ACCOUNT_SID']}/Calls/{sid}.json"
    async with http.get(url, headers={"Authorization": f"Basic {token.decode()}"}) as r:
        assert r.status == 200, await r.text()
        call: dict[str, Any] = await r.json()
        return call


async def until_terminal(
    http: aiohttp.ClientSession, system: System, org: str, call_id: str, within: float
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    call = await get_call(http, system, org, call_id)
    while call["status"] not in TERMINAL and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        call = await get_call(http, system, org, call_id)
    return call


async def post_call(http: aiohttp.ClientSession, system: System, org: str, to_number: str) -> str:
    async with http.post(
        f"{system.gateway}/calls",
        json={"to_number": to_number, "from_number": unique_number()},
        headers=system.auth(org),
    ) as r:
        assert r.status == 202, await r.text()
        return str((await r.json())["call_id"])


async def wait_for(what: str, within: float, check: Any) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def reconciliation_services(
    database_factory: DatabaseFactory,
    amqp_factory: AmqpFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[System]:
    """A system of this module's own: its tests script the carrier's next create requests
    (`create_responses`), which calls another module left dialing later (campaign windows,
    retries) would otherwise consume on the shared system."""
    yield from e2e_system(
        "reconciliation",
        database_factory,
        amqp_factory,
        tmp_path_factory,
        name_prefix="reconciliation-",
    )


@pytest.fixture
async def system(reconciliation_services: System) -> System:
    """The module's system, every service running and ready (tests restart what they stop)."""
    return await running(reconciliation_services)


@pytest.fixture
async def sim_faults(system: System, http: aiohttp.ClientSession) -> AsyncIterator[None]:
    """Faults set by the test are lifted afterwards, whatever happened."""
    yield
    await system.sim(http).set_faults(
        drop_callbacks=False,
        create_delay_seconds=0,
        create_responses=[],
    )


async def test_dialer_killed_while_the_carrier_creates_the_call_dials_it_exactly_once(
    system: System, http: aiohttp.ClientSession, sim_faults: None
) -> None:
    org = new_org_id()
    # the carrier creates the next call but answers only 20 s later, and no callback will
    # tell the dialer its SID: only asking the carrier can
    await system.sim(http).set_faults(
        drop_callbacks=True, create_responses=[{"timeout_seconds": 20}]
    )
    dialer = system.services["dialer"]
    try:
        call_id = await post_call(http, system, org, unique_number())
        [created] = await wait_for(
            "the carrier to create the call", 10, lambda: dialed(http, system, call_id)
        )
        assert dialer.stop(signal.SIGKILL) == -signal.SIGKILL  # before it learned the SID
        killed_at = time.monotonic()
        assert (await get_call(http, system, org, call_id))["call_sid"].startswith("queued-")
        await running(system)
        call = await until_terminal(http, system, org, call_id, within=60)
    finally:
        await running(system)
    recovered_in = time.monotonic() - killed_at

    assert call["status"] == "completed"
    assert call["call_sid"] == created["sid"]
    fetched = await carrier_call(http, system, created["sid"])
    assert fetched["status"] == "completed"
    assert call["duration"] == int(fetched["duration"])
    # well past DIALER_AMBIGUOUS_SAFE_DELAY (5 s in the e2e system): a redial would show now
    await asyncio.sleep(max(0.0, 8 - recovered_in))
    assert [c["sid"] for c in await dialed(http, system, call_id)] == [created["sid"]]


async def test_gateway_down_while_calls_end_every_call_reaches_its_true_final_state(
    system: System, http: aiohttp.ClientSession, sim_faults: None
) -> None:
    org = new_org_id()
    expected = {  # to_number → (status, outcome)
        unique_number(): ("completed", "completed"),
        "+15005550003": ("failed", "busy"),
        "+15005550004": ("failed", "no_answer"),
        "+15005550005": ("completed", "voicemail"),
        "+15005550006": ("failed", "failed"),
    }
    gateway = system.services["gateway"]
    # the carrier holds each create request 8 s (room for a loaded machine to see every request
    # arrive and stop the gateway first): the calls are placed, ring and end while the gateway
    # is down, so every status callback for them fails (Twilio does not retry)
    await system.sim(http).set_faults(create_delay_seconds=8)
    before = (await system.sim(http).state())["create_requests"]
    try:
        ids = {to: await post_call(http, system, org, to) for to in expected}

        async def all_requested() -> bool:
            return (await system.sim(http).state())["create_requests"] >= before + len(ids)

        await wait_for("the dialer to ask the carrier for every call", 10, all_requested)
        await system.sim(http).set_faults(create_delay_seconds=0)  # for later requests
        gateway.stop(signal.SIGTERM)
        stopped_at = time.time()

        async def all_ended() -> list[SimCall] | None:
            placed = [await dialed(http, system, call_id) for call_id in ids.values()]
            if all(
                len(p) == 1 and p[0]["status"] in TERMINAL | {"busy", "no-answer"} for p in placed
            ):
                return [p[0] for p in placed]
            return None

        carrier_calls = await wait_for("the calls to end at the carrier", 25, all_ended)
        # placed after the gateway was gone: not one callback of theirs got through
        assert min(c["created_at"] for c in carrier_calls) > stopped_at
        await asyncio.sleep(3)  # down a while longer
    finally:
        await running(system)

    for to_number, call_id in ids.items():
        call = await until_terminal(http, system, org, call_id, within=30)
        [placed] = await dialed(http, system, call_id)
        assert call["call_sid"] == placed["sid"], to_number
        assert (call["status"], call["outcome"]) == expected[to_number], (to_number, call)
        fetched = await carrier_call(http, system, placed["sid"])
        if call["status"] == "completed":
            assert call["duration"] == int(fetched["duration"]), to_number
            assert call["end_time"] is not None


async def test_canceled_batch_calls_still_ringing_are_canceled_at_the_carrier(
    system: System, http: aiohttp.ClientSession
) -> None:
    org = new_org_id()
    ringing = [LONG_RING + str(i) for i in range(3)]
    # ordinary numbers after them keep the batch dialing (a fully dialed batch is `completed`
    # and can no longer be canceled)
    rest = [unique_number() for _ in range(100)]
    async with http.post(
        f"{system.gateway}/calls/batch",
        json={"to_numbers": ringing + rest, "from_number": unique_number()},
        headers=system.auth(org),
    ) as r:
        assert r.status == 202, await r.text()
        batch_id = (await r.json())["batch_id"]
    status, batch = await read_json(
        http, f"{system.gateway}/calls/batch/{batch_id}", system.auth(org)
    )
    assert status == 200, batch
    ids = {c["to_number"]: c["call_id"] for c in batch["calls"]}

    async def all_ringing() -> bool:
        placed = [await dialed(http, system, ids[to]) for to in ringing]
        return all(len(p) == 1 and p[0]["status"] == "ringing" for p in placed)

    await wait_for("the long-ringing calls to ring", 10, all_ringing)
    async with http.post(
        f"{system.gateway}/calls/batch/{batch_id}/cancel", headers=system.auth(org)
    ) as r:
        assert r.status == 202, await r.text()
    canceled_at = time.monotonic()

    for to in ringing:
        call = await until_terminal(http, system, org, ids[to], within=40)
        assert (call["status"], call["outcome"], call["carrier_status"]) == (
            "failed",
            "canceled",
            "canceled",
        ), call
        [placed] = await dialed(http, system, ids[to])
        assert call["call_sid"] == placed["sid"]
        assert placed["status"] == "canceled"  # canceled at the carrier, not rung out
    assert time.monotonic() - canceled_at < 45  # they would have rung for 60 s, then no-answer
