"""What waits to be dialed, per organization: sampled from the dials table every few seconds
by every replica (not only the leader), so "calls are waiting and nobody dials them" shows
even when no replica holds the dial lock.

Only dials that are due count (pending, `not_before` passed): a dial waiting for its retry or
its scheduled time is not late.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import psycopg
import structlog
from calls_platform.db import Conn, Pool
from calls_platform.service import stop_if_cancelling
from prometheus_client import Gauge

from .campaign_store import number_busy

log = structlog.get_logger(__name__)

DIALS_PENDING = Gauge(
    "dials_pending", "Dials due and not yet sent to the carrier", ["organization_id"]
)
OLDEST_PENDING_AGE = Gauge(
    "dials_oldest_pending_age_seconds",
    "How long the organization's oldest due dial has been due",
    ["organization_id"],
)
UNSERVED = Gauge(
    "dials_pending_unserved_seconds",
    "How long the organization has had due dials without one of them being dialed",
    ["organization_id"],
)

SAMPLE_SECONDS = 15.0


@dataclass(frozen=True)
class OrganizationBacklog:
    organization_id: str
    pending: int
    oldest_age_seconds: float
    unserved_seconds: float


async def read_backlog(conn: Conn) -> list[OrganizationBacklog]:
    """Due dials per organization; the time since the organization was last served (a dial
    claimed: dialer.fairness) counts from when its oldest due dial became due at the earliest.
    A dial waiting for its number (the organization has a call to it in flight) is counted but
    is not unserved: it is dialed when that call ends, however long it lasts."""
    # `due` MATERIALIZED: flattened into the aggregate, the busy check ran once for each of
    # the two places that read it (two index probes per due dial, every 15 s)
    cur = await conn.execute(
        f"""
        WITH due AS MATERIALIZED (
            SELECT d.organization_id, d.not_before, f.last_served,
                   {number_busy("d")} AS number_busy
            FROM dialer.dials d
            LEFT JOIN dialer.fairness f ON f.key = 'org:' || d.organization_id
            WHERE d.state = 'pending' AND d.not_before <= now()
        )
        SELECT organization_id, count(*) AS pending,
               extract(epoch FROM now() - min(not_before))::float8 AS oldest,
               CASE WHEN bool_and(number_busy) THEN 0.0
                    ELSE extract(epoch FROM now() - greatest(
                        min(not_before) FILTER (WHERE NOT number_busy), max(last_served)))::float8
               END AS unserved
        FROM due
        GROUP BY organization_id
        """
    )
    return [
        OrganizationBacklog(
            organization_id=str(row["organization_id"]),
            pending=int(row["pending"]),
            oldest_age_seconds=max(0.0, float(row["oldest"])),
            unserved_seconds=max(0.0, float(row["unserved"])),
        )
        for row in await cur.fetchall()
    ]


class BacklogGauges:
    """Sets the per-organization gauges; an organization with nothing due loses its series."""

    def __init__(self) -> None:
        self._shown: set[str] = set()

    def show(self, backlog: list[OrganizationBacklog]) -> None:
        now_shown = set()
        for org in backlog:
            DIALS_PENDING.labels(org.organization_id).set(org.pending)
            OLDEST_PENDING_AGE.labels(org.organization_id).set(org.oldest_age_seconds)
            UNSERVED.labels(org.organization_id).set(org.unserved_seconds)
            now_shown.add(org.organization_id)
        for gone in self._shown - now_shown:
            for gauge in (DIALS_PENDING, OLDEST_PENDING_AGE, UNSERVED):
                gauge.remove(gone)
        self._shown = now_shown


async def sample_forever(pool: Pool, *, interval_seconds: float = SAMPLE_SECONDS) -> None:
    """Sample now and every `interval_seconds` until cancelled."""
    gauges = BacklogGauges()
    while True:
        try:
            async with pool.connection() as conn:
                gauges.show(await read_backlog(conn))
        except psycopg.Error as exc:
            log.warning("dial_backlog_unavailable", error=str(exc))
        stop_if_cancelling()
        await asyncio.sleep(interval_seconds)
