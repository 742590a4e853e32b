"""Belt and braces behind a consumer queue: a service tails the event store for the events its
queue should have brought, and takes in any that are older than a grace period and that it
still has no trace of (their message was lost: routed before the queue existed, a queue
deleted, purged). The service owns the tail's checkpoint, in a table of its own schema; the
event store is shared infrastructure, the only thing read.

The grace keeps the tail behind the consumer: an event younger than it is left for the queue
(and the checkpoint waits before it), so in the normal case the tail finds every event already
taken in and does nothing. Taking in is the consumer's own idempotent handling.

The read is filtered by type, so the checkpoint cannot stop only at the last event of those
types: for a rare type (a do-not-call change) every pass would scan the whole store since it.
Each pass also notes the readable head and when; once a noted head is older than the grace,
everything up to it is due, and a pass that read every event of its types (a complete, short
batch) has taken in all of them up to it, so the checkpoint moves there.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import psycopg
import structlog
from calls_events import Envelope
from psycopg import sql

from . import eventstore
from .db import Conn, Pool

log = structlog.get_logger(__name__)

BATCH: Final = 500

TakeIn = Callable[[Conn, Sequence[Envelope]], Awaitable[int]]
"""Takes in those of the events the service has no trace of; returns how many it took in."""


@dataclass(frozen=True)
class Due:
    events: Sequence[Envelope]
    """The leading events of a batch that are older than the grace, in store order."""
    complete: bool
    """Whether the whole batch was due (so the next batch may be due too)."""


def due(batch: Sequence[Envelope], *, now: datetime, grace: timedelta) -> Due:
    """The prefix of `batch` whose events occurred more than `grace` before `now`. A prefix,
    not a filter: the checkpoint may only move past events already checked."""
    for index, envelope in enumerate(batch):
        if envelope.occurred_at > now - grace:
            return Due(batch[:index], complete=False)
    return Due(batch, complete=True)


class HeadMarks:
    """The readable heads a tail noted, and when: `due(now)` is the latest one noted at least
    the grace before `now`. Only that one and the younger ones are kept, whatever the number
    of passes (a busy tail passes every few seconds for as long as the service runs)."""

    def __init__(self, grace: timedelta) -> None:
        self._grace = grace
        self._marks: collections.deque[tuple[datetime, eventstore.Checkpoint]] = collections.deque()

    def note(self, when: datetime, head: eventstore.Checkpoint) -> None:
        self._marks.append((when, head))
        due_by = when - self._grace
        while len(self._marks) > 1 and self._marks[1][0] <= due_by:
            self._marks.popleft()

    def due(self, now: datetime) -> eventstore.Checkpoint:
        """The latest head noted at least the grace before `now`; START when none is."""
        due_by = now - self._grace
        due_head = eventstore.START
        for when, head in self._marks:
            if when > due_by:
                break
            due_head = head
        return due_head

    def __len__(self) -> int:
        return len(self._marks)


class IntakeWatchdog:
    """Tails the store for `types`, hands what is due to `take_in`, keeps a checkpoint called
    `name` in `checkpoint_table` (a `(name text primary key, transaction_id xid8, position
    bigint)` table: the store's cursor, see `eventstore.Checkpoint`)."""

    def __init__(
        self,
        pool: Pool,
        *,
        name: str,
        checkpoint_table: str,
        types: Sequence[str],
        take_in: TakeIn,
        grace_seconds: float,
        interval_seconds: float | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._pool = pool
        self._name = name
        schema, table = checkpoint_table.split(".")
        self._table = sql.Identifier(schema, table)
        self._types = list(types)
        self._take_in = take_in
        self._grace = timedelta(seconds=grace_seconds)
        self._interval = (
            interval_seconds if interval_seconds is not None else min(grace_seconds / 2, 30.0)
        )
        self._clock = clock or _now
        self._heads = HeadMarks(self._grace)

    async def run(self) -> None:
        """Check forever (call under leadership)."""
        grace = self._grace.total_seconds()
        log.info("intake_watchdog_started", name=self._name, grace_seconds=grace)
        while True:
            try:
                more = await self.check()
            except psycopg.OperationalError as exc:
                log.warning("intake_watchdog_database_unavailable", error=str(exc))
                more = False
            except Exception:
                # taking in failed (the consumer's handling raised): the checkpoint stays
                # before the batch, and the next pass tries again
                log.exception("intake_watchdog_failed", name=self._name)
                more = False
            if not more:
                await asyncio.sleep(self._interval)

    async def check(self) -> bool:
        """One pass over the next batch; True when there may be more due right away."""
        async with self._pool.connection() as conn:
            now = self._clock()
            self._heads.note(now, await eventstore.readable_head(conn))
            checkpoint = await self._checkpoint(conn)
            batch = await self._read(conn, checkpoint)
            chosen = due(batch, now=now, grace=self._grace)
            after = checkpoint
            if chosen.events:
                taken = await self._take_in(conn, chosen.events)
                if taken:
                    log.warning(
                        "intake_watchdog_took_in",
                        name=self._name,
                        taken=taken,
                        checked=len(chosen.events),
                    )
                after = batch.checkpoints[len(chosen.events) - 1]
            if chosen.complete and len(batch) < BATCH:
                after = max(after, self._heads.due(now))
            if after != checkpoint:
                await self._save(conn, after)
        return chosen.complete and len(batch) == BATCH

    async def _read(self, conn: Conn, after: eventstore.Checkpoint) -> eventstore.Events:
        """The tail's only read of the store, in commit order."""
        return await eventstore.read_all(conn, after=after, limit=BATCH, types=self._types)

    async def _checkpoint(self, conn: Conn) -> eventstore.Checkpoint:
        cur = await conn.execute(
            sql.SQL("SELECT transaction_id::text AS tx, position FROM {} WHERE name = %s").format(
                self._table
            ),
            (self._name,),
        )
        row = await cur.fetchone()
        return (
            eventstore.Checkpoint(int(row["tx"]), int(row["position"])) if row else eventstore.START
        )

    async def _save(self, conn: Conn, checkpoint: eventstore.Checkpoint) -> None:
        await conn.execute(
            sql.SQL(
                "INSERT INTO {} (name, transaction_id, position) VALUES (%s, %s::text::xid8, %s)"
                " ON CONFLICT (name) DO UPDATE"
                " SET transaction_id = excluded.transaction_id, position = excluded.position"
            ).format(self._table),
            (self._name, str(checkpoint.transaction_id), checkpoint.position),
        )


def _now() -> datetime:
    return datetime.now(UTC)
