"""Calls requested but never taken in: a CallRequested whose message never reached the dialer's
queue (published before the queue existed, a queue deleted or purged) would leave its call
`queued` for good. The dialer tails the event store for CallRequested (its own checkpoint in
dialer.intake_checkpoints) and takes in, as its consumer would, every request older than the
grace that has no dial row."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final

from calls_events import CallRequested, Envelope
from calls_platform.db import Conn, Pool
from calls_platform.intake import IntakeWatchdog
from prometheus_client import Counter

from . import dial_queue

CHECKPOINT: Final = "call-requests"

TAKEN_IN = Counter(
    "dials_taken_in_by_watchdog_total",
    "Requested calls the dialer's queue never brought, taken in from the event store",
)


def requests_of(envelopes: Sequence[Envelope]) -> list[tuple[Envelope, CallRequested]]:
    return [(e, event) for e in envelopes if isinstance(event := e.event(), CallRequested)]


async def take_in(conn: Conn, envelopes: Sequence[Envelope]) -> int:
    """Take in the requests that have no dial row (the rest were taken in by the consumer)."""
    requests = requests_of(envelopes)
    cur = await conn.execute(
        "SELECT call_id FROM dialer.dials WHERE call_id = ANY(%s)",
        ([event.call_id for _, event in requests],),
    )
    known = {row["call_id"] for row in await cur.fetchall()}
    lost = [(e, event) for e, event in requests if event.call_id not in known]
    if not lost:
        return 0
    taken = await dial_queue.enqueue_many(conn, lost)
    TAKEN_IN.inc(taken)
    return taken


def intake_watchdog(
    pool: Pool, *, grace_seconds: float, clock: Callable[[], datetime] | None = None
) -> IntakeWatchdog:
    return IntakeWatchdog(
        pool,
        name=CHECKPOINT,
        checkpoint_table="dialer.intake_checkpoints",
        types=[CallRequested.TYPE],
        take_in=take_in,
        grace_seconds=grace_seconds,
        clock=clock,
    )
