"""The dial loop's decisions, with a hand-written fake behind the Carrier port and the real
PostgreSQL: what each dial result does to the dial, how reconciliation resolves ambiguous
dials, and that cancelling the loop still records in-flight results."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import pytest
from calls_events import CallFailed, CallInitiated
from calls_platform.db import Pool
from dialer import attempts, claims
from dialer.carrier import (
    Ambiguous,
    DialResult,
    Placed,
    Rejected,
    Throttled,
    Unsent,
)
from dialer.fake_carrier import FakeCarrier
from dialer.scheduler import DialLoop

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Background, Calls, Loops, WallClock

pytestmark = pytest.mark.integration


def new_sid() -> str:
    return "CA" + uuid.uuid4().hex


def dial_loop(loops: Loops, carrier: FakeCarrier, **options: Any) -> DialLoop:
    options.setdefault("calls_per_second", 50)
    return loops.loop(carrier, **options)


async def test_a_placed_dial_is_recorded_initiated_with_its_sid(loops: Loops) -> None:
    carrier = FakeCarrier(Placed("CA" + "1" * 32))
    event = await loops.calls.enqueued("org_a")
    loops.start(dial_loop(loops, carrier))

    await loops.wait(lambda: _state_is(loops.calls, event.call_id, "initiated"), what="initiated")
    assert await loops.calls.events(event.call_id) == [
        CallInitiated(call_id=event.call_id, call_sid="CA" + "1" * 32, source="dial")
    ]
    [request] = carrier.requests
    assert (request.call_id, request.organization_id, request.to_number) == (
        str(event.call_id),
        "org_a",
        event.to_number,
    )


async def test_a_rejected_dial_fails_with_the_carrier_code_and_is_not_retried(loops: Loops) -> None:
    carrier = FakeCarrier(Rejected(code=21211, message="invalid 'To'", http_status=400))
    event = await loops.calls.enqueued("org_a")
    loops.start(dial_loop(loops, carrier))

    await loops.wait(lambda: _state_is(loops.calls, event.call_id, "failed"), what="failed")
    assert await loops.calls.events(event.call_id) == [
        CallFailed(
            call_id=event.call_id, error_code=21211, error_message="invalid 'To'", http_status=400
        )
    ]
    await asyncio.sleep(0.3)
    assert len(carrier.requests) == 1


@pytest.mark.parametrize("result", [Throttled("429"), Unsent("connection refused")])
async def test_a_dial_the_carrier_certainly_did_not_create_goes_back_in_line_with_backoff(
    loops: Loops, result: DialResult
) -> None:
    carrier = FakeCarrier(result)
    event = await loops.calls.enqueued("org_a")
    task = loops.start(dial_loop(loops, carrier))

    await loops.wait(lambda: _requests(carrier, 1), what="a create request")
    await loops.wait(
        lambda: _state_is(loops.calls, event.call_id, "pending"), what="back to pending"
    )
    await loops.stop_task(task)
    row = await loops.calls.dial(event.call_id)
    assert row["attempts"] == 1
    assert row["dial_started_at"] is None
    assert row["not_before"] > datetime.now(UTC) + timedelta(seconds=1)
    assert await loops.calls.events(event.call_id) == []
    assert len(carrier.requests) == 1


async def test_a_dial_the_carrier_keeps_refusing_fails_after_max_attempts(loops: Loops) -> None:
    carrier = FakeCarrier(Unsent("connection refused"))
    event = await loops.calls.enqueued("org_a")
    loops.start(dial_loop(loops, carrier, max_attempts=1))

    await loops.wait(lambda: _state_is(loops.calls, event.call_id, "failed"), what="failed")
    [failed] = await loops.calls.events(event.call_id)
    assert isinstance(failed, CallFailed)
    assert failed.error_code is None
    assert "after 1 attempts" in failed.error_message
    assert "connection refused" in failed.error_message


async def test_an_ambiguous_dial_stays_dialing(loops: Loops) -> None:
    carrier = FakeCarrier(Ambiguous("HTTP 500"))
    event = await loops.calls.enqueued("org_a")
    task = loops.start(dial_loop(loops, carrier))

    await loops.wait(lambda: _requests(carrier, 1), what="a create request")
    await loops.stop_task(task)
    assert await loops.calls.state(event.call_id) == "dialing"
    assert await loops.calls.events(event.call_id) == []


async def test_reconcile_adopts_the_oldest_carrier_call_not_owned_by_another_dial(
    loops: Loops,
) -> None:
    number = "+14155550199"
    # three organizations: one organization never has two calls to a number in flight at once
    owned, first, second = [
        await loops.calls.enqueued(org, number) for org in ("org_a", "org_b", "org_c")
    ]
    carrier = FakeCarrier()
    for _ in range(3):
        async with loops.pool.connection() as conn:
            await claims.claim_next(conn)  # then the dialer crashed: all three left 'dialing'
    sid_owned, sid_1, sid_2 = new_sid(), new_sid(), new_sid()
    async with loops.pool.connection() as conn:
        await attempts.mark_initiated(conn, owned.call_id, sid_owned, "callback")
    for sid in (sid_owned, sid_1, sid_2):
        carrier.has_call(number, first.from_number, sid)

    loop = dial_loop(loops, carrier, reconcile_after_seconds=0)
    await loop.reconcile_once()

    assert await loops.calls.events(first.call_id) == [
        CallInitiated(call_id=first.call_id, call_sid=sid_1, source="reconciliation")
    ]
    assert await loops.calls.events(second.call_id) == [
        CallInitiated(call_id=second.call_id, call_sid=sid_2, source="reconciliation")
    ]
    started = (await loops.calls.dial(first.call_id))["dial_started_at"]
    assert all(since <= started for _, _, since in carrier.searches)


async def test_reconcile_leaves_recent_dials_alone(loops: Loops) -> None:
    event = await loops.calls.enqueued("org_a")
    async with loops.pool.connection() as conn:
        await claims.claim_next(conn)
    carrier = FakeCarrier()
    await dial_loop(loops, carrier, reconcile_after_seconds=60).reconcile_once()
    assert carrier.searches == []
    assert await loops.calls.state(event.call_id) == "dialing"


async def test_reconcile_leaves_dials_in_flight_alone(loops: Loops) -> None:
    carrier = FakeCarrier()
    carrier.gate.clear()
    event = await loops.calls.enqueued("org_a")
    loop = dial_loop(loops, carrier, reconcile_after_seconds=0)
    loops.start(loop)
    await loops.wait(lambda: _requests(carrier, 1), what="a create request")

    await loop.reconcile_once()
    assert carrier.searches == []
    carrier.gate.set()
    await loops.wait(lambda: _state_is(loops.calls, event.call_id, "initiated"), what="initiated")


async def test_reconcile_waits_then_dials_again_once_then_gives_up(
    loops: Loops, wall_clock: WallClock
) -> None:
    event = await loops.calls.enqueued("org_a")
    carrier = FakeCarrier()
    loop = dial_loop(
        loops,
        carrier,
        reconcile_after_seconds=0,
        ambiguous_safe_delay_seconds=30,
        wall_clock=wall_clock,
    )
    async with loops.pool.connection() as conn:
        await claims.claim_next(conn)

    wall_clock.set(await loops.calls.started(event.call_id), plus_seconds=1)
    await loop.reconcile_once()  # the carrier's list may lag: not yet
    assert await loops.calls.state(event.call_id) == "dialing"

    wall_clock.set(await loops.calls.started(event.call_id), plus_seconds=31)
    await loop.reconcile_once()
    row = await loops.calls.dial(event.call_id)
    assert (row["state"], row["redialed"]) == ("pending", True)

    async with loops.pool.connection() as conn:
        again = await claims.claim_next(conn)
    assert again is not None
    assert again.attempts == 2
    wall_clock.set(await loops.calls.started(event.call_id), plus_seconds=1)
    await loop.reconcile_once()
    assert await loops.calls.state(event.call_id) == "dialing"

    wall_clock.set(await loops.calls.started(event.call_id), plus_seconds=31)
    await loop.reconcile_once()
    [failed] = await loops.calls.events(event.call_id)
    assert isinstance(failed, CallFailed)
    assert failed.error_code is None
    assert failed.http_status is None
    assert await loops.calls.state(event.call_id) == "failed"


async def test_cancelling_the_loop_still_records_the_results_of_dials_in_flight(
    loops: Loops,
) -> None:
    carrier = FakeCarrier(Placed(new_sid()), Rejected(21214, "unreachable", 400), Placed(new_sid()))
    carrier.gate.clear()
    events = [await loops.calls.enqueued("org_a") for _ in range(3)]
    task = loops.start(dial_loop(loops, carrier))
    await loops.wait(lambda: _requests(carrier, 3), what="three dials in flight")

    task.cancel()
    await asyncio.sleep(0.1)
    assert not task.done(), "the loop must loops.wait for the carrier's answers"
    carrier.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task

    states = sorted([await loops.calls.state(e.call_id) for e in events])
    assert states == ["failed", "initiated", "initiated"]
    for e in events:
        assert len(await loops.calls.events(e.call_id)) == 1


async def _state_is(calls: Calls, call_id: uuid.UUID, state: str) -> bool:
    return bool(await calls.state(call_id) == state)


async def _requests(carrier: FakeCarrier, n: int) -> bool:
    return len(carrier.requests) >= n


class WatchedWakeup(asyncio.Event):
    """A wakeup that tells when the loop has begun waiting on it (`entered`)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()

    async def wait(self) -> Literal[True]:
        self.entered.set()
        return await super().wait()


class SwallowingWakeup(WatchedWakeup):
    """A wakeup whose wait() loses the first cancellation, as asyncio.wait_for does on Python
    3.11 when the cancellation coincides with its wakeup (psycopg_pool waits for a free
    connection that way)."""

    swallowed = 0

    async def wait(self) -> Literal[True]:
        try:
            return await super().wait()
        except asyncio.CancelledError:
            if self.swallowed:
                raise
            self.swallowed += 1
            return True


class Wakeups:
    """Stands in for the work listener: the test holds the loop's wakeup itself."""

    def __init__(self, event: asyncio.Event) -> None:
        self.event = event

    def subscribe(self) -> asyncio.Event:
        return self.event


@pytest.mark.parametrize(
    ("wakeup", "notified", "swallowed"),
    [
        # shutdown (or lost leadership) while a notification is being delivered
        pytest.param(WatchedWakeup, True, 0, id="notified-at-that-moment"),
        pytest.param(SwallowingWakeup, False, 1, id="cancellation-lost-on-the-way"),
    ],
)
async def test_cancelling_an_idle_loop_stops_it(
    pool: Pool,
    background: Background,
    wakeup: type[WatchedWakeup],
    notified: bool,
    swallowed: int,
) -> None:
    """Even when work is notified at that moment, or a library loses the cancellation."""
    event = wakeup()
    wakeups = Wakeups(event)
    loop = DialLoop(pool, FakeCarrier(), wakeups, calls_per_second=50)  # type: ignore[arg-type]
    task = background(loop.run())
    await asyncio.wait_for(event.entered.wait(), 10)  # nothing to dial: waiting for work

    if notified:
        wakeups.event.set()
    task.cancel()

    done, _ = await asyncio.wait([task], timeout=2)
    assert getattr(wakeups.event, "swallowed", 0) == swallowed
    assert task in done, "the dial loop swallowed its cancellation and kept running"
    assert task.cancelled()
