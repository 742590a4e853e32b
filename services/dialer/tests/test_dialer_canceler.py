"""The carrier canceler against the simulator through the twilio library: placed calls of a
canceled batch that still ring, and calls kept queued at the carrier too long, are canceled
there once and recorded as the carrier's own report; a conversation is never cut off."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest
from calls_events import CallStatusReported
from calls_platform.db import Pool
from calls_platform.notify import Listener
from calls_testing.simulator import LocalSimulator, local_simulator
from carrier_sim import SimConfig
from carrier_sim.scenarios import LONG_CALL_NUMBER, LONG_RING_NUMBER
from dialer import attempts, cancel_candidates, carrier_news, claims, dial_queue, dials
from dialer.canceler import CarrierCanceler
from dialer.carrier import CancelRefused, DialRequest, Placed
from dialer.twilio_carrier import TwilioCarrier
from dialer.watchdog import StaleCallWatchdog

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Calls

pytestmark = pytest.mark.integration


async def place(pool: Pool, calls: Calls, carrier: TwilioCarrier, to: str, **kw: Any) -> Any:
    """Request a call and dial it as the dial loop does; return (request, SID)."""
    event = await calls.enqueued("org_a", to, **kw)
    async with pool.connection() as conn:
        dial = await claims.claim_next(conn)
    assert dial is not None
    assert dial.call_id == event.call_id
    result = await carrier.create_call(
        DialRequest(str(dial.call_id), "org_a", dial.to_number, dial.from_number, record=False)
    )
    assert isinstance(result, Placed), result
    async with pool.connection() as conn:
        assert await attempts.mark_initiated(conn, dial.call_id, result.call_sid, "dial")
    return event, result.call_sid


async def place_in_a_batch(
    pool: Pool, calls: Calls, carrier: TwilioCarrier, to: str
) -> tuple[str, Any, str]:
    """`place` a call of a new batch; return (batch id, request, SID)."""
    batch = f"batch-{uuid.uuid4().hex}"
    event, sid = await place(pool, calls, carrier, to, batch_id=batch)
    return batch, event, sid


async def status_at(sim: LocalSimulator, sid: str) -> str:
    [call] = [c for c in await sim.calls() if c["sid"] == sid]
    return str(call["status"])


async def until_status(sim: LocalSimulator, sid: str, status: str) -> None:
    for _ in range(200):
        if await status_at(sim, sid) == status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{sid} never became {status}")


async def cancel_batch(pool: Pool, batch_id: str) -> None:
    async with pool.connection() as conn:
        await dial_queue.cancel_batch(conn, "org_a", batch_id)


async def test_ringing_calls_of_a_canceled_batch_are_canceled_at_the_carrier_once(
    pool: Pool, calls: Calls, carrier: TwilioCarrier, sim: LocalSimulator
) -> None:
    batch = f"batch-{uuid.uuid4().hex}"
    placed = [
        await place(pool, calls, carrier, LONG_RING_NUMBER + str(i), batch_id=batch)
        for i in range(3)
    ]
    for _, sid in placed:
        await until_status(sim, sid, "ringing")
    other_event, other_sid = await place(pool, calls, carrier, LONG_RING_NUMBER + "9")
    await until_status(sim, other_sid, "ringing")
    canceler = CarrierCanceler(pool, carrier)

    assert await canceler.check_once() == 0  # nothing canceled yet: nothing to do
    await cancel_batch(pool, batch)
    assert await canceler.check_once() == 3

    for event, sid in placed:
        assert await status_at(sim, sid) == "canceled"
        reports = await calls.events(event.call_id, CallStatusReported)
        assert [(r.carrier_status, r.source, r.call_sid) for r in reports] == [
            ("ringing", "reconciliation", sid),  # what the carrier said when asked first
            ("canceled", "reconciliation", sid),
        ]
        dial = await calls.dial(event.call_id)
        assert (dial["carrier_cancel"], dial["carrier_status"]) == ("canceled", "canceled")
    assert await status_at(sim, other_sid) == "ringing"  # not of that batch: rings on
    assert await calls.events(other_event.call_id, CallStatusReported) == []

    assert await canceler.check_once() == 0  # idempotent: asked once, recorded once
    for event, _ in placed:
        assert len(await calls.events(event.call_id, CallStatusReported)) == 2


async def test_a_conversation_of_a_canceled_batch_is_left_alone(
    pool: Pool, calls: Calls, carrier: TwilioCarrier, sim: LocalSimulator
) -> None:
    batch, event, sid = await place_in_a_batch(pool, calls, carrier, LONG_CALL_NUMBER)
    await until_status(sim, sid, "in-progress")
    await cancel_batch(pool, batch)
    canceler = CarrierCanceler(pool, carrier)

    assert await canceler.check_once() == 0
    assert await status_at(sim, sid) == "in-progress"
    reports = await calls.events(event.call_id, CallStatusReported)
    assert [r.carrier_status for r in reports] == ["in-progress"]
    dial = await calls.dial(event.call_id)
    assert (dial["carrier_cancel"], dial["carrier_status"]) == (None, "in-progress")
    assert await canceler.check_once() == 0  # known to be in progress: not asked again
    assert len(await calls.events(event.call_id, CallStatusReported)) == 1


async def test_a_call_already_known_to_be_answered_is_not_even_fetched(
    pool: Pool, calls: Calls, carrier: TwilioCarrier, sim: LocalSimulator
) -> None:
    batch, event, _ = await place_in_a_batch(pool, calls, carrier, LONG_CALL_NUMBER)
    async with pool.connection() as conn:
        await carrier_news.note_carrier_status(
            conn, event.call_id, "in-progress"
        )  # a callback said
        await dial_queue.cancel_batch(conn, "org_a", batch)
        assert await cancel_candidates.cancel_candidates(conn, queue_limit_seconds=0) == []


async def test_the_carrier_refuses_to_cancel_an_ended_call(
    carrier: TwilioCarrier, sim: LocalSimulator
) -> None:
    placed = await carrier.create_call(
        DialRequest(str(uuid.uuid4()), "org_a", "+14155550100", "+15017122661", record=False)
    )
    assert isinstance(placed, Placed)
    await until_status(sim, placed.call_sid, "completed")
    answer = await carrier.cancel_call(placed.call_sid)
    assert isinstance(answer, CancelRefused)
    assert answer.code == 21220
    assert answer.message == "Call is not in-progress. Cannot redirect."


# --- calls the carrier keeps queued ------------------------------------------------------------


@pytest.fixture
async def queueing_sim() -> AsyncIterator[LocalSimulator]:
    """A simulator that keeps every call queued for a minute (as Twilio does with calls
    created faster than the account's rate)."""
    config = SimConfig(ring_seconds=0.05, talk_seconds=0.1, initiate_delay_seconds=60)
    async with local_simulator(config) as sim:
        yield sim


async def test_a_call_queued_at_the_carrier_beyond_the_limit_is_canceled_there(
    pool: Pool,
    calls: Calls,
    queueing_sim: LocalSimulator,
    make_carrier: Callable[..., TwilioCarrier],
) -> None:
    sim = queueing_sim
    carrier = make_carrier(api_url=sim.url)
    event, sid = await place(pool, calls, carrier, "+14155550123")
    patient = CarrierCanceler(pool, carrier, queue_limit_seconds=3600)
    assert await patient.check_once() == 0
    assert await status_at(sim, sid) == "queued"

    await asyncio.sleep(0.3)
    strict = CarrierCanceler(pool, carrier, queue_limit_seconds=0.2)
    assert await strict.check_once() == 1
    assert await status_at(sim, sid) == "canceled"
    reports = await calls.events(event.call_id, CallStatusReported)
    assert [(r.carrier_status, r.source) for r in reports] == [
        ("queued", "reconciliation"),
        ("canceled", "reconciliation"),
    ]
    assert (await calls.dial(event.call_id))["carrier_cancel"] == "canceled"
    assert await strict.check_once() == 0


async def test_a_canceled_batch_wakes_the_canceler(
    pool: Pool, calls: Calls, carrier: TwilioCarrier, sim: LocalSimulator, dialer_db: str
) -> None:
    listener = Listener(dialer_db, dials.CANCEL_CHANNEL)
    listening = asyncio.create_task(listener.run())
    canceler = CarrierCanceler(pool, carrier, wakeup=listener.subscribe(), poll_seconds=3600)
    running = asyncio.create_task(canceler.run())
    try:
        batch, _, sid = await place_in_a_batch(pool, calls, carrier, LONG_RING_NUMBER + "5")
        await until_status(sim, sid, "ringing")
        await asyncio.sleep(0.3)  # the canceler has looked once and now waits
        await cancel_batch(pool, batch)
        for _ in range(100):
            if await status_at(sim, sid) == "canceled":
                break
            await asyncio.sleep(0.02)
        assert await status_at(sim, sid) == "canceled"  # long before the hour's poll
    finally:
        for task in (running, listening):
            task.cancel()
        await asyncio.gather(running, listening, return_exceptions=True)


# --- the stale-call watchdog, which shares how answers are recorded -----------------------------


async def test_calls_long_in_progress_do_not_hide_quiet_calls_from_the_watchdog(
    pool: Pool, calls: Calls, carrier: TwilioCarrier, sim: LocalSimulator
) -> None:
    talking, talking_sid = await place(pool, calls, carrier, LONG_CALL_NUMBER)
    await until_status(sim, talking_sid, "in-progress")
    await calls.carrier_says(talking.call_id, "in-progress")
    quiet, quiet_sid = await place(pool, calls, carrier, "+14155550124")
    await until_status(sim, quiet_sid, "completed")
    async with pool.connection() as conn:  # the talking call has been quiet for longer
        await conn.execute(
            "UPDATE dialer.dials SET carrier_news_at = now() - interval '200 seconds'"
            " WHERE call_id = %s",
            (talking.call_id,),
        )
    watchdog = StaleCallWatchdog(
        pool, carrier, stale_after_seconds=0, in_progress_check_seconds=300, batch=1
    )
    assert await watchdog.check_once() == 1
    [report] = await calls.events(quiet.call_id, CallStatusReported)
    assert report.carrier_status == "completed"
    assert await calls.events(talking.call_id, CallStatusReported) == []


async def test_the_remembered_carrier_status_never_moves_backwards(
    pool: Pool, calls: Calls
) -> None:
    event = await calls.enqueued("org_a")
    await calls.carrier_says(event.call_id, "ringing", "in-progress", "ringing", "initiated")
    assert (await calls.dial(event.call_id))["carrier_status"] == "in-progress"
