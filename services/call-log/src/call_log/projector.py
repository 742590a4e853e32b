"""The projector: folds events from the event store into the call log's read models.

Idempotent by construction: the checkpoint (the (transaction_id, position) of the last event
applied, see calls_platform.eventstore) is written in the same transaction as the read-model
rows, so each event takes effect exactly once even though the projector may crash and restart
anywhere. Rebuilding means truncating and starting at the beginning.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import psycopg
import pydantic_core
import structlog
from calls_events import (
    BatchCancelRequested,
    BatchPaused,
    BatchRequested,
    BatchResumed,
    Envelope,
    requested_calls,
)
from calls_platform import eventstore, leader
from calls_platform.db import Conn, Pool
from calls_platform.eventstore import Checkpoint
from calls_platform.notify import AppendListener, wait_for
from prometheus_client import Counter, Gauge

from .domain import CALL_EVENTS, CallView, apply

log = structlog.get_logger(__name__)

CHECKPOINT: Final = "calls"
STEP_LOCK: Final = "call-log-projection-step"

EVENTS_PROJECTED = Counter("projection_events_applied_total", "Events applied to the call log")
PROJECTION_POSITION = Gauge("projection_position", "Last event position applied")
PROJECTION_LAG_SECONDS = Gauge(
    "projection_lag_seconds", "Age of the last applied event when it was applied"
)
PROJECTION_LAG_EVENTS = Gauge("projection_lag_events", "Committed events not yet applied")

_VIEW_COLUMNS: Final = [
    "call_id",
    "organization_id",
    "call_sid",
    "direction",
    "status",
    "carrier_status",
    "canceled",
    "outcome",
    "error_code",
    "error_reason",
    "from_number",
    "to_number",
    "agent_id",
    "agent_name",
    "batch_id",
    "batch_index",
    "answered_by",
    "ended_by",
    "last_sequence",
    "created_at",
    "start_time",
    "end_time",
    "duration",
    "transcript",
    "provider_usage",
    "recording_url",
    "last_position",
    "variables",
    "metadata",
    "attempt",
    "previous_call_id",
    "first_call_id",
    "next_call_id",
    "not_before",
    "dial_outcome",
]
# Every changed row in one statement: the rows travel as one JSON document (serialized at once
# by pydantic_core) that PostgreSQL turns into call_log.calls records; one statement per row
# cost most of a 10,000-call batch's projection.
_UPSERT: Final = (
    f"INSERT INTO call_log.calls ({', '.join(_VIEW_COLUMNS)})"
    f" SELECT {', '.join(_VIEW_COLUMNS)}"
    " FROM jsonb_populate_recordset(NULL::call_log.calls, %s::jsonb)"
    " ON CONFLICT (call_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _VIEW_COLUMNS if c != "call_id")
)


def _view_from_row(row: dict[str, Any]) -> CallView:
    fields = {c: row[c] for c in _VIEW_COLUMNS if c != "outcome"}
    return CallView(**fields)


def _rows_document(views: Iterable[CallView]) -> str:
    return pydantic_core.to_json([view.as_row() for view in views]).decode()


async def apply_events(conn: Conn, events: Sequence[Envelope]) -> None:
    """Apply `events` (in position order) to the read models, in the caller's transaction.

    Everything is read and folded before the first write: the first write gives the
    transaction an id, and from then until its commit every event-store reader in the
    cluster waits for it (see calls_platform.eventstore), so the writes come last, together."""
    call_ids = {uuid.UUID(str(e.data["call_id"])) for e in events if "call_id" in e.data}
    views: dict[uuid.UUID, CallView] = {}
    if call_ids:
        cur = await conn.execute(
            f"SELECT {', '.join(_VIEW_COLUMNS)} FROM call_log.calls WHERE call_id = ANY(%s)",
            (list(call_ids),),
        )
        views = {row["call_id"]: _view_from_row(row) for row in await cur.fetchall()}
    before_batch = dict(views)
    changed: set[uuid.UUID] = set()
    batch_writes: list[tuple[str, tuple[Any, ...]]] = []  # in event order, after the fold
    for envelope in events:
        event = envelope.event()
        # a batch's calls are queued from its BatchRequested on (each one's own CallRequested,
        # appended when it is dialed, changes nothing)
        folded = (
            requested_calls(event)
            if isinstance(event, BatchRequested)
            else [event]
            if isinstance(event, CALL_EVENTS)
            else []
        )
        for call_event in folded:
            before = views.get(call_event.call_id)
            after = apply(
                before,
                call_event,
                organization_id=envelope.organization_id,
                position=envelope.position or 0,
                at=envelope.occurred_at,
            )
            if after is not None and after != before:
                views[call_event.call_id] = after
                changed.add(call_event.call_id)
        if isinstance(event, BatchRequested):
            batch_writes.append(
                (
                    "INSERT INTO call_log.batches (batch_id, organization_id, total, from_number,"
                    " agent_id, duplicates_dropped, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (batch_id) DO NOTHING",
                    (
                        event.batch_id,
                        envelope.organization_id,
                        event.total,
                        event.from_number,
                        event.agent_id,
                        event.duplicates_dropped,
                        envelope.occurred_at,
                    ),
                )
            )
        elif isinstance(event, BatchCancelRequested):
            batch_writes.append(
                (
                    "UPDATE call_log.batches SET cancel_requested = true"
                    " WHERE batch_id = %s AND organization_id = %s",
                    (event.batch_id, envelope.organization_id),
                )
            )
        elif isinstance(event, BatchPaused | BatchResumed):
            batch_writes.append(
                (
                    "UPDATE call_log.batches SET paused = %s"
                    " WHERE batch_id = %s AND organization_id = %s",
                    (isinstance(event, BatchPaused), event.batch_id, envelope.organization_id),
                )
            )
    for statement, parameters in batch_writes:
        await conn.execute(statement, parameters)
    if changed:
        await conn.execute(_UPSERT, (_rows_document(views[i] for i in changed),))
        await _count(conn, [(before_batch.get(i), views[i]) for i in changed])


def _count_key(view: CallView) -> tuple[str, str, str, str]:
    return (view.organization_id, view.direction, view.status, view.outcome or "")


async def _count(conn: Conn, changes: list[tuple[CallView | None, CallView]]) -> None:
    """Move each changed call from its old counter to its new one (exact totals for lists)."""
    deltas: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
    for before, after in changes:
        if before is not None:
            deltas[_count_key(before)] -= 1
        deltas[_count_key(after)] += 1
    rows = [(*key, n) for key, n in sorted(deltas.items()) if n]
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO call_log.call_counts"
                " (organization_id, direction, status, outcome, calls) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (organization_id, direction, status, outcome)"
                " DO UPDATE SET calls = call_log.call_counts.calls + excluded.calls",
                rows,
            )


class Projector:
    def __init__(
        self,
        pool: Pool,
        listener: AppendListener | None = None,
        *,
        batch_size: int = 2000,
        poll_seconds: float = 0.02,
    ) -> None:
        self._pool = pool
        self._wakeup = listener.subscribe() if listener else asyncio.Event()
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._lag_observed = 0.0

    async def run(self) -> None:
        """Project forever (call under leadership)."""
        log.info("projector_started")
        while True:
            try:
                applied = await self.step()
                await self._observe()
            except psycopg.OperationalError as exc:
                log.warning("projector_database_unavailable", error=str(exc))
                await wait_for(self._wakeup, 1.0)
                continue
            if not applied:
                await wait_for(self._wakeup, self._poll_seconds)

    async def step(self) -> int:
        """Apply the next batch of events; return how many were applied."""
        # pipelined: BEGIN, the lock and the checkpoint go in one round trip, every write and
        # the COMMIT in one more (four round trips a step, not nine: a step of a few events
        # is mostly round trips)
        async with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
            # one step at a time (a second leader for a moment, a rebuild), by an advisory
            # lock: FOR UPDATE on the checkpoint row gave each step a transaction id from its
            # start, and every event-store reader in the cluster waited for the whole step
            await step_lock(conn)
            checkpoint = await checkpoint_of(conn)
            # whole transactions: a read never shows a batch with only some of its calls
            events = await eventstore.read_all(
                conn, after=checkpoint, limit=self._batch_size, whole_transactions=True
            )
            if not events:
                return 0
            await apply_events(conn, events)
            last = events[-1]
            await conn.execute(
                "UPDATE call_log.checkpoints SET transaction_id = %s::text::xid8, position = %s"
                " WHERE name = %s",
                (str(events.checkpoint.transaction_id), events.checkpoint.position, CHECKPOINT),
            )
        EVENTS_PROJECTED.inc(len(events))
        PROJECTION_POSITION.set(last.position or 0)
        PROJECTION_LAG_SECONDS.set(max(0.0, time.time() - last.occurred_at.timestamp()))
        return len(events)

    async def _observe(self) -> None:
        now = time.monotonic()
        if now - self._lag_observed < 1.0:
            return
        self._lag_observed = now
        async with self._pool.connection() as conn:
            checkpoint = await checkpoint_of(conn)
        PROJECTION_LAG_EVENTS.set(
            await eventstore.observe_lag(self._pool, "call-log-projector", checkpoint)
        )


async def step_lock(conn: Conn) -> None:
    """Hold the projection's step lock until the caller's transaction ends (an advisory lock:
    it takes no transaction id)."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (leader.lock_key(STEP_LOCK),))


async def checkpoint_of(conn: Conn) -> Checkpoint:
    """The projector's checkpoint."""
    cur = await conn.execute(
        "SELECT transaction_id::text AS tx, position FROM call_log.checkpoints WHERE name = %s",
        (CHECKPOINT,),
    )
    row = await cur.fetchone()
    return Checkpoint(int(row["tx"]), int(row["position"])) if row else eventstore.START


async def projected_and_head(conn: Conn) -> tuple[Checkpoint, Checkpoint]:
    """The projector's checkpoint and the event store's head (both in commit order): every
    event committed before this call is projected once the first reaches the second."""
    return await checkpoint_of(conn), await eventstore.head(conn)


async def rebuild(
    pool: Pool,
    *,
    batch_size: int = 5000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Empty the read models and replay every event; returns the number of events applied.

    Run with the projector stopped (or let it wait on the step lock). `progress`
    is told (events applied, head position) after each batch.
    """
    async with pool.connection() as conn, conn.transaction():
        await step_lock(conn)
        await conn.execute("TRUNCATE call_log.calls, call_log.batches, call_log.call_counts")
        await conn.execute(
            "UPDATE call_log.checkpoints SET transaction_id = '0', position = 0 WHERE name = %s",
            (CHECKPOINT,),
        )
    async with pool.connection() as conn:
        head = await eventstore.head_position(conn)
        # what committed before the rebuild started is read to the end, not stopped short of
        await eventstore.wait_readable(conn)
    projector = Projector(pool, batch_size=batch_size)
    total = 0
    while applied := await projector.step():
        total += applied
        if progress:
            progress(total, head)
    return total
