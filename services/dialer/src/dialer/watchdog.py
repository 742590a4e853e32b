"""The stale-call watchdog: asks the carrier about calls whose callbacks stopped coming.

Twilio does not retry a status callback that failed (the gateway down for a deploy, a network
blip), so a call can sit in `initiated` or `in-progress` forever. Calls the dialer placed that
have had no news for `stale_after_seconds` (or `in_progress_check_seconds` while in progress) are
fetched from the carrier, and what it says is recorded as the same CallStatusReported a
callback would have produced, marked `source: reconciliation`, with the carrier's end time
for a call that ended. The call log only moves forward, so a late callback after this changes
nothing.

A recorded call found `completed` this way lost its recording callback too, most likely (Twilio
retries neither); a recording callback can also be lost alone. Either way a recorded call that
ended `completed` is due `recording_grace_seconds` after it ended unless its recording was
reported by then: its recordings are then listed at the carrier and recorded as the
RecordingReported events their callbacks would have produced (see `lost_recordings`).
"""

from __future__ import annotations

from typing import Final

import structlog
from calls_platform.db import Pool
from prometheus_client import Counter, Gauge

from . import carrier_news, lost_recordings, recording_checks
from .carrier import Carrier, UnknownCall
from .statuses import IN_PROGRESS, KNOWN, TERMINAL, sql_list

log = structlog.get_logger(__name__)

CALLS_RECONCILED = Counter(
    "calls_reconciled_total", "Stale calls asked about at the carrier, by what was found", ["found"]
)
RECORDINGS_RECONCILED = Counter(
    "recordings_reconciled_total",
    "Recordings of calls found completed by asking, listed at the carrier, by what was found"
    " (completed, absent, failed: reported; unfinished or none: asked again; gave_up; error)",
    ["found"],
)
OLDEST_UNFINISHED = Gauge(
    "oldest_unfinished_call_age_seconds", "Age of the oldest dialed call not known to have ended"
)


# Calls dialed and not known to have ended: the predicate of the dials_unfinished index, as it
# reads there (the terminal statuses as literals: as a parameter, the generic plan PostgreSQL
# caches for the statement could not use the partial index and scanned every dial).
_UNFINISHED: Final = (
    "state = 'initiated'"
    f" AND (carrier_status IS NULL OR carrier_status NOT IN {sql_list(TERMINAL)})"
)
OLDEST_UNFINISHED_SQL: Final = (
    "SELECT extract(epoch FROM now() - min(coalesce(carrier_news_at, finished_at)))"
    f" AS quiet FROM dialer.dials WHERE {_UNFINISHED}"
)
# the limit is applied in the query: calls long in progress (not yet due) must not fill the
# batch and hide the quiet calls behind them
STALE_CALLS_SQL: Final = (
    f"SELECT call_id, call_sid, carrier_status FROM dialer.dials WHERE {_UNFINISHED}"
    " AND coalesce(carrier_news_at, finished_at) <= now() - make_interval(secs =>"
    " CASE WHEN carrier_status = %(talking)s THEN %(in_progress)s ELSE %(quiet)s END)"
    " ORDER BY coalesce(carrier_news_at, finished_at) LIMIT %(batch)s"
)


class StaleCallWatchdog:
    def __init__(
        self,
        pool: Pool,
        carrier: Carrier,
        *,
        stale_after_seconds: float = 120.0,
        in_progress_check_seconds: float = 300.0,
        batch: int = 50,
        recordings_recheck_seconds: float = 30.0,
        recordings_max_checks: int = 10,
        recording_grace_seconds: float = lost_recordings.RECORDING_GRACE_SECONDS,
    ) -> None:
        self._pool = pool
        self._carrier = carrier
        self._stale_after = stale_after_seconds
        # a call in progress may rightly stay quiet for hours, but its completion callback can
        # be lost like any other: it is asked about again every so often, not once at the end
        # of the longest possible call
        self._in_progress_check = in_progress_check_seconds
        self._batch = batch
        # a recording the carrier is still processing is asked about again this often, up to
        # this many times in all
        self._recordings_recheck = recordings_recheck_seconds
        self._recordings_max_checks = recordings_max_checks
        # how long after a recorded call ended its recording callback is waited for
        self._recording_grace = recording_grace_seconds

    async def check_once(self) -> int:
        """Ask about the stalest calls, then list the recordings of recorded calls that
        ended completed with no recording reported in time; return how many status reports
        were recorded."""
        recorded = await self._check_stale_calls()
        await self.check_recordings_once()
        return recorded

    async def check_recordings_once(self) -> int:
        """List the recordings of the recorded calls due for it; return how many
        RecordingReported events were appended (a repeat of a callback's is not)."""
        async with self._pool.connection() as conn:
            due = await recording_checks.recordings_due(conn, limit=self._batch)
        appended = 0
        for call in due:
            call_id = str(call.call_id)
            try:
                listed = await self._carrier.list_recordings(call.call_sid)
            except Exception as exc:  # one call's failure must not hold up the others
                RECORDINGS_RECONCILED.labels("error").inc()
                log.warning("recordings_list_failed", call_id=call_id, error=repr(exc))
                listed = None
            # a failed listing counts as a check that found nothing: asked again, up to the limit
            verdict = lost_recordings.decide(
                call.call_id,
                call.call_sid,
                listed or [],
                checks_before=call.recordings_checks,
                max_checks=self._recordings_max_checks,
            )
            for report in verdict.reports:
                RECORDINGS_RECONCILED.labels(report.status).inc()
            if verdict.again and listed is not None:
                RECORDINGS_RECONCILED.labels("unfinished" if listed else "none").inc()
            for odd in verdict.unknown:
                log.warning(
                    "recording_unknown_status", call_id=call_id, sid=odd.sid, status=odd.status
                )
            if verdict.gave_up:
                RECORDINGS_RECONCILED.labels("gave_up").inc()
                log.warning(
                    "recordings_not_settled", call_id=call_id, checks=self._recordings_max_checks
                )
            async with self._pool.connection() as conn:
                new = await recording_checks.record_recordings(
                    conn,
                    call.call_id,
                    verdict.reports,
                    again_after_seconds=self._recordings_recheck if verdict.again else None,
                )
            appended += new
            if verdict.reports:
                log.info(
                    "recordings_reconciled", call_id=call_id, reported=len(verdict.reports), new=new
                )
        return appended

    async def _check_stale_calls(self) -> int:
        params = {
            "talking": IN_PROGRESS,
            "in_progress": self._in_progress_check,
            "quiet": self._stale_after,
            "batch": self._batch,
        }
        async with self._pool.connection() as conn:
            cur = await conn.execute(OLDEST_UNFINISHED_SQL)
            oldest = await cur.fetchone()
            cur = await conn.execute(STALE_CALLS_SQL, params)
            rows = await cur.fetchall()
        quiet = oldest["quiet"] if oldest else None
        OLDEST_UNFINISHED.set(float(quiet) if quiet is not None else 0.0)
        recorded = 0
        for row in rows:
            try:
                found = await self._carrier.fetch_call(row["call_sid"])
            except UnknownCall:
                # asked again at its next due time; the pass goes on (it was the first of
                # every pass, and the quiet calls behind it were never asked)
                CALLS_RECONCILED.labels("not-found").inc()
                log.warning("stale_call_unknown_to_carrier", call_id=str(row["call_id"]))
                async with self._pool.connection() as conn:
                    await carrier_news.note_asked(conn, row["call_id"])
                continue
            CALLS_RECONCILED.labels(found.status).inc()
            if found.status not in KNOWN:
                log.warning(
                    "stale_call_unknown_status", call_id=str(row["call_id"]), status=found.status
                )
                async with self._pool.connection() as conn:
                    await carrier_news.note_asked(conn, row["call_id"])
                continue
            async with self._pool.connection() as conn:
                if not await carrier_news.record_carrier_answer(
                    conn, row["call_id"], found, recording_grace_seconds=self._recording_grace
                ):
                    continue  # nothing new: checked, and not asked again for a while
            recorded += 1
            log.info("stale_call_reconciled", call_id=str(row["call_id"]), status=found.status)
        return recorded
