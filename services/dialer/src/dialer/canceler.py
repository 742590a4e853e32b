"""The carrier canceler: cancels placed calls at the carrier that should not ring on.

Calls of a canceled batch that are placed but not yet answered, and calls the carrier has kept
`queued` beyond `DIALER_CARRIER_QUEUE_LIMIT_SECONDS`, are canceled at the carrier with
`update(status="canceled")` (what to cancel is decided in `carrier_cancel.decide`). Each call
is first fetched, so the decision rests on what the carrier says now, and whatever it says is
recorded as a CallStatusReported (`source: reconciliation`), like the stale-call watchdog's
reports; the cancel's own answer (`canceled`) is recorded the same way. A call is asked to
cancel once: `dialer.dials.carrier_cancel` keeps the carrier's answer. Runs in one replica at a
time (leadership `dialer-carrier-cancels`), woken when a batch is canceled.
"""

from __future__ import annotations

import asyncio

import psycopg
import structlog
from calls_platform.db import Pool
from calls_platform.notify import wait_for
from prometheus_client import Counter

from . import cancel_candidates, carrier_news, lost_recordings
from .carrier import CancelRefused, Carrier, CarrierCall
from .carrier_cancel import Cancel, decide

log = structlog.get_logger(__name__)

CARRIER_CANCELS = Counter(
    "carrier_cancels_total",
    "Placed calls the dialer asked the carrier to cancel, by reason and the carrier's answer"
    " (canceled, refused: it had moved on, error: to be asked again)",
    ["reason", "result"],
)


class CarrierCanceler:
    def __init__(
        self,
        pool: Pool,
        carrier: Carrier,
        *,
        queue_limit_seconds: float = 600.0,
        wakeup: asyncio.Event | None = None,
        poll_seconds: float = 5.0,
        recording_grace_seconds: float = lost_recordings.RECORDING_GRACE_SECONDS,
    ) -> None:
        self._pool = pool
        self._carrier = carrier
        self._queue_limit = queue_limit_seconds
        self._wakeup = wakeup or asyncio.Event()
        self._poll = poll_seconds
        self._recording_grace = recording_grace_seconds

    async def run(self) -> None:
        """Check forever (call under leadership): at each wakeup, and every `poll_seconds`."""
        while True:
            try:
                await self.check_once()
            except psycopg.OperationalError as exc:
                log.warning("carrier_cancel_database_unavailable", error=str(exc))
            except Exception:
                log.exception("carrier_cancel_failed")
            await wait_for(self._wakeup, self._poll)

    async def check_once(self) -> int:
        """Cancel at the carrier what is due; return how many calls it canceled."""
        async with self._pool.connection() as conn:
            candidates = await cancel_candidates.cancel_candidates(
                conn, queue_limit_seconds=self._queue_limit
            )
        canceled = 0
        for candidate in candidates:
            try:
                canceled += await self._consider(candidate)
            except psycopg.OperationalError:
                raise
            except Exception as exc:  # the carrier unreachable, a timeout, a 5xx: ask again later
                log.warning(
                    "carrier_cancel_not_done", call_id=str(candidate.call_id), error=repr(exc)
                )
        return canceled

    async def _consider(self, candidate: cancel_candidates.CancelCandidate) -> int:
        now = await self._carrier.fetch_call(candidate.call_sid)
        await self._record(candidate, now)
        decision = decide(
            now.status,
            batch_canceled=candidate.batch_canceled,
            seconds_since_placed=candidate.seconds_since_placed,
            queue_limit_seconds=self._queue_limit,
        )
        if not isinstance(decision, Cancel):
            log.info("carrier_cancel_left", call_id=str(candidate.call_id), why=decision.why)
            return 0
        try:
            answer = await self._carrier.cancel_call(candidate.call_sid)
        except Exception:
            CARRIER_CANCELS.labels(decision.reason, "error").inc()
            raise
        if isinstance(answer, CancelRefused):
            result = "refused"
            answer = await self._carrier.fetch_call(candidate.call_sid)  # where it moved on to
        else:
            result = "canceled" if answer.status == "canceled" else "refused"
        await self._record(candidate, answer)
        async with self._pool.connection() as conn:
            await cancel_candidates.note_carrier_cancel(conn, candidate.call_id, result)
        CARRIER_CANCELS.labels(decision.reason, result).inc()
        log.info(
            "carrier_cancel",
            call_id=str(candidate.call_id),
            reason=decision.reason,
            result=result,
            status=answer.status,
        )
        return 1 if result == "canceled" else 0

    async def _record(
        self, candidate: cancel_candidates.CancelCandidate, found: CarrierCall
    ) -> None:
        async with self._pool.connection() as conn:
            await carrier_news.record_carrier_answer(
                conn, candidate.call_id, found, recording_grace_seconds=self._recording_grace
            )
