"""The stale-call watchdog: asks the carrier about calls whose callbacks stopped coming.

Twilio does not retry a status callback that failed (the gateway down for a deploy, a network
blip), so a call can sit in `initiated` or `in-progress` forever. Calls the dialer placed that
have had no news for `stale_after_seconds` (or `max_call_seconds` while in progress) are
fetched from the carrier, and what it says is recorded as the same CallStatusReported a
callback would have produced, marked `source: reconciliation`. The call log only moves forward,
so a late callback after this changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, get_args

import structlog
from calls_events import CallStatusReported, CarrierStatus, Envelope, call_stream
from calls_platform import eventstore
from calls_platform.db import Pool
from prometheus_client import Counter, Gauge

from .carrier import Carrier

log = structlog.get_logger(__name__)

TERMINAL: Final = ("completed", "busy", "failed", "no-answer", "canceled")
CARRIER_STATUSES: Final = frozenset(get_args(CarrierStatus))
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
        max_call_seconds: float = 4 * 3600.0,
        batch: int = 50,
    ) -> None:
        self._pool = pool
        self._carrier = carrier
        self._stale_after = stale_after_seconds
        self._max_call = max_call_seconds
        self._batch = batch

    async def check_once(self) -> int:
        """Ask about the stalest calls; return how many reports were recorded."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT call_id, organization_id, correlation_id, call_sid, carrier_status,"
                " extract(epoch FROM now() - coalesce(carrier_news_at, finished_at)) AS quiet"
                " FROM dialer.dials WHERE state = 'initiated'"
                " AND (carrier_status IS NULL OR carrier_status <> ALL(%s))"
                " ORDER BY coalesce(carrier_news_at, finished_at) LIMIT %s",
                (list(TERMINAL), self._batch),
            )
            rows = await cur.fetchall()
        OLDEST_UNFINISHED.set(float(rows[0]["quiet"]) if rows else 0.0)
        recorded = 0
        for row in rows:
            limit = self._max_call if row["carrier_status"] == "in-progress" else self._stale_after
            if float(row["quiet"]) < limit:
                continue
            found = await self._carrier.fetch_call(row["call_sid"])
            CALLS_RECONCILED.labels(found.status).inc()
            if found.status not in CARRIER_STATUSES:
                log.warning(
                    "stale_call_unknown_status", call_id=str(row["call_id"]), status=found.status
                )
                continue
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute(
                    "UPDATE dialer.dials SET carrier_status = %s, carrier_news_at = now()"
                    " WHERE call_id = %s",
                    (found.status, row["call_id"]),
                )
                if found.status == row["carrier_status"]:
                    continue  # still as it was: checked, nothing new to record
                report = CallStatusReported(
                    call_id=row["call_id"],
                    call_sid=found.sid,
                    carrier_status=found.status,
                    duration_seconds=found.duration_seconds,
                    answered_by=found.answered_by,
                    reported_at=datetime.now(UTC),
                    source="reconciliation",
                )
                await eventstore.append(
                    conn,
                    [
                        Envelope.wrap(
                            report,
                            stream_id=call_stream(row["call_id"]),
                            organization_id=row["organization_id"],
                            correlation_id=row["correlation_id"],
                            event_id=eventstore.deterministic_event_id(
                                "reconciled", str(row["call_id"]), found.status
                            ),
                        )
                    ],
                )
                recorded += 1
            log.info("stale_call_reconciled", call_id=str(row["call_id"]), status=found.status)
        return recorded
