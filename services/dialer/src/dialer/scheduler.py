"""The dial loop: paces dials with the token bucket, picks them fairly, places them with the
carrier, records what happened, and reconciles attempts whose outcome is unknown.

Runs only in the replica holding the dialer leadership lock, which is what keeps the dial rate
global however many dialer replicas run.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import structlog
from calls_platform.db import Conn, Pool
from calls_platform.notify import Listener, wait_for
from prometheus_client import Counter, Gauge

from . import attempts, claims
from .carrier import (
    Ambiguous,
    Carrier,
    DialRequest,
    DialResult,
    Placed,
    Rejected,
    Throttled,
    Unsent,
)
from .dials import Dial
from .pacing import TokenBucket
from .reconcile import Adopt, DialAgain, GiveUp, WaitAndLook, decide

log = structlog.get_logger(__name__)

DIAL_ATTEMPTS = Counter("dial_attempts_total", "Create-call requests by result", ["result"])
DIAL_RATE = Gauge("dial_rate_per_second", "Dials placed per second over the last 10 seconds")
DIAL_RATE_LIMIT = Gauge("dial_rate_limit_per_second", "Configured dial rate (DIALER_CPS)")
DIALS_IN_FLIGHT = Gauge("dials_in_flight", "Create-call requests awaiting the carrier")
DIALS_RECONCILED = Counter("dials_reconciled_total", "Ambiguous dials resolved", ["decision"])


MIN_GAP = 0.95
"""Two dials are never sent closer than this share of the interval 1/DIALER_CPS."""

CARRY = 1 - MIN_GAP
"""The share of an interval the bucket keeps beyond one token (its capacity is 1 + CARRY): the
loop wakes a few milliseconds after each token is due, and a bucket capped at exactly 1 lost
that lateness at every dial (20 CPS measured 19.38 calls/s); kept, the next wait is shorter
and the rate holds, while no gap can be shorter than MIN_GAP of an interval."""


def _cancel_requested() -> bool:
    """Whether this task was asked to stop, even if a library lost the CancelledError on the
    way: on Python 3.11 asyncio.wait_for (psycopg_pool waits for a free connection with it)
    returns normally when the cancellation coincides with its wakeup. The request count stays,
    so a stopped or deposed leader does not keep dialing."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class DialLoop:
    def __init__(
        self,
        pool: Pool,
        carrier: Carrier,
        work: Listener,
        *,
        calls_per_second: float,
        max_in_flight: int = 50,
        max_attempts: int = 8,
        ambiguous_safe_delay_seconds: float = 30.0,
        reconcile_after_seconds: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        # what campaign rules (windows, schedules, retries' delays) and the reconciliation of
        # ambiguous dials (how long ago a dial started) are decided against
        self._wall_clock = wall_clock
        self._pool = pool
        self._carrier = carrier
        self._wakeup = work.subscribe()
        self._cps = calls_per_second
        self._slots = asyncio.Semaphore(max_in_flight)
        self._max_attempts = max_attempts
        self._safe_delay = ambiguous_safe_delay_seconds
        self._reconcile_after = reconcile_after_seconds
        self._clock = clock
        self._in_flight: dict[object, asyncio.Task[None]] = {}
        self._recent: deque[float] = deque()
        DIAL_RATE_LIMIT.set(calls_per_second)

    async def run(self) -> None:
        """Dial forever (call under leadership). On cancel, waits for in-flight requests."""
        # a fresh bucket per leadership term: a new leader never bursts
        bucket = TokenBucket(rate=self._cps, capacity=1.0 + CARRY, tokens=0.0)
        last_sent: float | None = None
        reconciler = asyncio.create_task(self._reconcile_forever(), name="reconciler")
        log.info("dial_loop_started", calls_per_second=self._cps)
        try:
            while True:
                if _cancel_requested():
                    raise asyncio.CancelledError
                wait = bucket.wait_time(self._clock())
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                await self._slots.acquire()
                ready_at = self._clock()
                try:
                    async with self._pool.connection() as conn:
                        dial = await claims.claim_next(conn, self._wall_clock())
                except psycopg.OperationalError as exc:
                    self._slots.release()
                    log.warning("dial_loop_database_unavailable", error=str(exc))
                    await asyncio.sleep(1)
                    continue
                if dial is None:
                    self._slots.release()
                    await wait_for(self._wakeup, 0.5)
                    continue
                # the token is taken as of before the claim: taken after it, every dial added
                # the claim's round trips to the interval (20 CPS measured 14 at the carrier,
                # see docs/benchmarks.md)
                bucket.try_take(ready_at)
                # ... but a slow claim followed by a fast one must not send two dials back to
                # back: never closer than MIN_GAP of an interval at the carrier
                if last_sent is not None:
                    early = last_sent + MIN_GAP / self._cps - self._clock()
                    if early > 0:
                        await asyncio.sleep(early)
                last_sent = self._clock()
                self._note_dial()
                task = asyncio.create_task(self._place(dial), name=f"dial-{dial.call_id}")
                self._in_flight[dial.call_id] = task
                task.add_done_callback(functools.partial(self._done, dial.call_id))
        finally:
            reconciler.cancel()
            if self._in_flight:
                log.info("dial_loop_draining", in_flight=len(self._in_flight))
                await asyncio.wait(list(self._in_flight.values()), timeout=15)

    def _done(self, key: object, _: asyncio.Task[None]) -> None:
        self._in_flight.pop(key, None)
        self._slots.release()
        DIALS_IN_FLIGHT.set(len(self._in_flight))

    def _note_dial(self) -> None:
        now = self._clock()
        self._recent.append(now)
        while self._recent and self._recent[0] < now - 10:
            self._recent.popleft()
        DIAL_RATE.set(len(self._recent) / 10)
        DIALS_IN_FLIGHT.set(len(self._in_flight) + 1)

    async def _place(self, dial: Dial) -> None:
        request = DialRequest(
            call_id=str(dial.call_id),
            organization_id=dial.organization_id,
            to_number=dial.to_number,
            from_number=dial.from_number,
            record=dial.record,
            variables=dial.variables,
        )
        result = await self._carrier.create_call(request)
        DIAL_ATTEMPTS.labels(type(result).__name__.lower()).inc()
        log.info("dial_result", call_id=request.call_id, result=repr(result))
        try:
            async with self._pool.connection() as conn:
                await self._record(conn, dial, result)
        except psycopg.OperationalError as exc:
            # the dial stays 'dialing'; the reconciler finds the outcome at the carrier later
            log.warning("dial_result_not_recorded", call_id=request.call_id, error=str(exc))

    async def _record(
        self,
        conn: Conn,
        dial: Dial,
        result: DialResult,
    ) -> None:
        match result:
            case Placed(call_sid=sid):
                await attempts.mark_initiated(conn, dial.call_id, sid, "dial")
            case Rejected(code=code, message=message, http_status=status):
                await attempts.mark_failed(
                    conn, dial.call_id, code=code, message=message, http_status=status
                )
            case Throttled(message=message) | Unsent(message=message):
                if dial.attempts >= self._max_attempts:
                    await attempts.mark_failed(
                        conn,
                        dial.call_id,
                        code=None,
                        message=f"carrier unavailable after {dial.attempts} attempts: {message}",
                        http_status=None,
                    )
                else:
                    await attempts.retry_later(conn, dial.call_id, min(2.0**dial.attempts, 60.0))
            case Ambiguous():
                pass  # left 'dialing': reconciled once the carrier has had time to show it

    async def _reconcile_forever(self) -> None:
        while True:
            if _cancel_requested():
                raise asyncio.CancelledError
            try:
                await self.reconcile_once()
            except psycopg.OperationalError as exc:
                log.warning("reconcile_database_unavailable", error=str(exc))
            except Exception:
                log.exception("reconcile_failed")
            await asyncio.sleep(5)

    async def reconcile_once(self) -> None:
        """Resolve every dial left 'dialing' that is not in flight in this process."""
        async with self._pool.connection() as conn:
            stuck = [d for d in await attempts.dialing(conn) if d.call_id not in self._in_flight]
        now = self._wall_clock()
        for dial in stuck:
            started = dial.dial_started_at or now
            age = (now - started).total_seconds()
            if age < self._reconcile_after:
                continue
            found = await self._carrier.find_calls(
                to_number=dial.to_number,
                from_number=dial.from_number,
                since=started - timedelta(seconds=5),
            )
            async with self._pool.connection() as conn:
                taken = await attempts.known_sids(conn, [c.sid for c in found])
                candidates = [c.sid for c in reversed(found) if c.sid not in taken]
                decision = decide(
                    candidates,
                    seconds_since_attempt=age,
                    safe_delay_seconds=self._safe_delay,
                    already_redialed=dial.redialed,
                )
                match decision:
                    case Adopt(call_sid=sid):
                        await attempts.mark_initiated(conn, dial.call_id, sid, "reconciliation")
                    case DialAgain():
                        await attempts.redial(conn, dial.call_id)
                    case GiveUp(reason=reason):
                        await attempts.mark_failed(
                            conn, dial.call_id, code=None, message=reason, http_status=None
                        )
                    case WaitAndLook():
                        continue
            DIALS_RECONCILED.labels(type(decision).__name__.lower()).inc()
            log.info("dial_reconciled", call_id=str(dial.call_id), decision=repr(decision))
