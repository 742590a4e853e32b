"""The stale-call watchdog: asks the carrier about calls whose callbacks stopped coming.

Twilio does not retry a status callback that failed (the gateway down for a deploy, a network
blip), so a call can sit in `initiated` or `in-progress` forever. Calls the dialer placed that
have had no news for `stale_after_seconds` (or `in_progress_check_seconds` while in progress) are
fetched from the carrier, and what it says is recorded as the same CallStatusReported a
callback would have produced, marked `source: reconciliation`. The call log only moves forward,
so a late callback after this changes nothing.
"""

from __future__ import annotations

import structlog
from calls_platform.db import Pool
from prometheus_client import Counter, Gauge

from . import dials
from .carrier import Carrier
from .statuses import KNOWN, TERMINAL

log = structlog.get_logger(__name__)

CALLS_RECONCILED = Counter(
    "calls_reconciled_total", "Stale calls asked about at the carrier, by what was found", ["found"]
)
OLDEST_UNFINISHED = Gauge(
    "oldest_unfinished_call_age_seconds", "Age of the oldest dialed call not known to have ended"
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
    ) -> None:
        self._pool = pool
        self._carrier = carrier
        self._stale_after = stale_after_seconds
        # a call in progress may rightly stay quiet for hours, but its completion callback can
        # be lost like any other: it is asked about again every so often, not once at the end
        # of the longest possible call
        self._in_progress_check = in_progress_check_seconds
        self._batch = batch

    async def check_once(self) -> int:
        """Ask about the stalest calls; return how many reports were recorded."""
        unfinished = (
            "state = 'initiated'"
            " AND (carrier_status IS NULL OR carrier_status <> ALL(%(terminal)s))"
        )
        params = {
            "terminal": sorted(TERMINAL),
            "in_progress": self._in_progress_check,
            "quiet": self._stale_after,
            "batch": self._batch,
        }
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT extract(epoch FROM now() - min(coalesce(carrier_news_at, finished_at)))"
                f" AS quiet FROM dialer.dials WHERE {unfinished}",
                params,
            )
            oldest = await cur.fetchone()
            # the limit is applied in the query: calls long in progress (not yet due) must not
            # fill the batch and hide the quiet calls behind them
            cur = await conn.execute(
                f"SELECT call_id, call_sid, carrier_status FROM dialer.dials WHERE {unfinished}"
                " AND coalesce(carrier_news_at, finished_at) <= now() - make_interval(secs =>"
                " CASE WHEN carrier_status = 'in-progress' THEN %(in_progress)s ELSE %(quiet)s END)"
                " ORDER BY coalesce(carrier_news_at, finished_at) LIMIT %(batch)s",
                params,
            )
            rows = await cur.fetchall()
        quiet = oldest["quiet"] if oldest else None
        OLDEST_UNFINISHED.set(float(quiet) if quiet is not None else 0.0)
        recorded = 0
        for row in rows:
            found = await self._carrier.fetch_call(row["call_sid"])
            CALLS_RECONCILED.labels(found.status).inc()
            if found.status not in KNOWN:
                log.warning(
                    "stale_call_unknown_status", call_id=str(row["call_id"]), status=found.status
                )
                continue
            async with self._pool.connection() as conn:
                if not await dials.record_carrier_answer(conn, row["call_id"], found):
                    continue  # nothing new: checked, and not asked again for a while
            recorded += 1
            log.info("stale_call_reconciled", call_id=str(row["call_id"]), status=found.status)
        return recorded
