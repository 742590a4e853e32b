"""What the dialer's queues never brought, taken from the event store. A message that never
reached them (published before the queue existed, a queue deleted or purged) would leave a
call `queued` for good, or, for a control event, dial what should not be dialed: a number put
on the do-not-call list, a paused or canceled batch. Two tails of the store, each with its own
checkpoint in dialer.intake_checkpoints, take in, as the consumer would, every event older than
the grace that the dialer does not hold yet: requests with no dial row (`intake_watchdog`), and
cancels, pauses, resumes, do-not-call changes and calling policies (`control_watchdog`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final

from calls_events import BatchCancelRequested, BatchRequested, CallRequested, Envelope, Event
from calls_platform.db import Conn, Pool
from calls_platform.intake import IntakeWatchdog, TakeIn
from prometheus_client import Counter

from . import campaign_store, dial_queue, dials

CHECKPOINT: Final = "call-requests"
CONTROL_CHECKPOINT: Final = "control-events"
CONTROL_TYPES: Final = (BatchCancelRequested, *campaign_store.CAMPAIGN_EVENTS)

TAKEN_IN = Counter(
    "dials_taken_in_by_watchdog_total",
    "Requested calls the dialer's queue never brought, taken in from the event store",
)
CONTROL_TAKEN_IN = Counter(
    "dialer_control_events_taken_in_by_watchdog_total",
    "Cancels, pauses, resumes, do-not-call changes and calling policies the dialer's control"
    " queue never brought, applied from the event store",
)


def requests_of(envelopes: Sequence[Envelope]) -> list[tuple[Envelope, CallRequested]]:
    return [(e, event) for e in envelopes if isinstance(event := e.event(), CallRequested)]


async def take_in(conn: Conn, envelopes: Sequence[Envelope]) -> int:
    """Take in the requests that have no dial row (the rest were taken in by the consumer):
    stored CallRequested events, and the calls a BatchRequested carries."""
    stored = requests_of(envelopes)
    batches = [(e, event) for e in envelopes if isinstance(event := e.event(), BatchRequested)]
    asked = [event.call_id for _, event in stored] + [
        call.call_id for _, batch in batches for call in batch.calls
    ]
    cur = await conn.execute("SELECT call_id FROM dialer.dials WHERE call_id = ANY(%s)", (asked,))
    known = {row["call_id"] for row in await cur.fetchall()}
    lost = [(e, event) for e, event in stored if event.call_id not in known]
    taken = await dial_queue.enqueue_many(conn, lost) if lost else 0
    for envelope, batch in batches:
        missing = [call.call_id for call in batch.calls if call.call_id not in known]
        if missing:
            taken += await dial_queue.enqueue_batch(conn, envelope, batch, only=missing)
    TAKEN_IN.inc(taken)
    return taken


def intake_watchdog(
    pool: Pool, *, grace_seconds: float, clock: Callable[[], datetime] | None = None
) -> IntakeWatchdog:
    """Requests with no dial row."""
    return _watchdog(
        pool, CHECKPOINT, [CallRequested, BatchRequested], take_in, grace_seconds, clock
    )


def _watchdog(
    pool: Pool,
    name: str,
    types: Sequence[type[Event]],
    take: TakeIn,
    grace_seconds: float,
    clock: Callable[[], datetime] | None,
) -> IntakeWatchdog:
    return IntakeWatchdog(
        pool,
        name=name,
        checkpoint_table="dialer.intake_checkpoints",
        types=[t.TYPE for t in types],
        take_in=take,
        grace_seconds=grace_seconds,
        clock=clock,
    )


async def take_in_control(conn: Conn, envelopes: Sequence[Envelope]) -> int:
    """Apply, in store order, the control events the dialer does not hold yet (each is
    idempotent: one the consumer applied, or one a later event of its key overrode, changes
    nothing); return how many changed something."""
    cancels = [
        event.batch_id for e in envelopes if isinstance(event := e.event(), BatchCancelRequested)
    ]
    cur = await conn.execute(
        "SELECT batch_id FROM dialer.canceled_batches WHERE batch_id = ANY(%s)", (cancels,)
    )
    canceled = {row["batch_id"] for row in await cur.fetchall()}
    taken = 0
    unblocks = False
    for envelope in envelopes:
        event = envelope.event()
        if isinstance(event, BatchCancelRequested):
            if event.batch_id not in canceled:
                await dial_queue.cancel_batch(conn, envelope.organization_id, event.batch_id)
                canceled.add(event.batch_id)
                taken += 1
        elif isinstance(event, campaign_store.CAMPAIGN_EVENTS):
            folded = await campaign_store.apply_campaign_event(conn, envelope, event)
            taken += folded.applied
            unblocks = unblocks or folded.unblocks
    if unblocks:
        await dials.notify(conn, dials.WORK_CHANNEL)
    CONTROL_TAKEN_IN.inc(taken)
    return taken


def control_watchdog(
    pool: Pool, *, grace_seconds: float, clock: Callable[[], datetime] | None = None
) -> IntakeWatchdog:
    """Cancels and campaign rules the dialer does not hold."""
    return _watchdog(pool, CONTROL_CHECKPOINT, CONTROL_TYPES, take_in_control, grace_seconds, clock)
