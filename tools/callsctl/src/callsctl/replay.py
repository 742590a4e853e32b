"""Refill one consumer queue from the event store: the events its bindings select (from the
central topology), published straight to that queue (the default exchange, routing key = the
queue's name), so no other queue gets a duplicate. Each message is the relay's (the same
`amqp.to_message`), persistent, mandatory and confirmed. Consumers deduplicate by event id, so
replaying what a queue already had changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Final

from calls_platform import amqp, eventstore, topology
from calls_platform.db import Conn, connect

BATCH: Final = 500


class NotReplayable(Exception):
    """The queue is not one the event store feeds."""


@dataclass(frozen=True)
class Replayed:
    queue: str
    event_types: list[str]
    published: int
    first_position: int | None
    last_position: int | None
    scanned_to: int
    """The last position read from the store (whether or not its event was published)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def read_after(
    conn: Conn, after: eventstore.Checkpoint, types: Sequence[str]
) -> eventstore.Events:
    """The next events of `types` after the cursor `after`, in the store's (commit) order. The
    replay's only read of the event store."""
    return await eventstore.read_all(conn, after=after, limit=BATCH, types=types)


def spec_of(
    queue: str, queues: Sequence[topology.QueueSpec] = topology.QUEUES
) -> topology.QueueSpec:
    spec = topology.queue(queue, queues)
    if spec.exchange != topology.EVENTS_EXCHANGE:
        raise NotReplayable(
            f"{queue} is fed by {spec.exchange}, not by the event store: nothing to replay"
        )
    return spec


async def replay(
    database_url: str,
    amqp_url: str,
    queue: str,
    *,
    from_position: int = 0,
    to_position: int | None = None,
    since: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    queues: Sequence[topology.QueueSpec] = topology.QUEUES,
) -> Replayed:
    """Publish to `queue` every event its bindings select with position in
    [`from_position`, `to_position`] and (with `since`) that occurred at or after `since`.
    Declares the queue first (from the topology, `queues`), so a deleted one comes back
    bound."""
    spec = spec_of(queue, queues)
    types = list(spec.bindings)
    published, first, last = 0, None, None
    # Positions are unique but not commit order: an event at a position >= from_position sorts
    # after (0, from_position - 1) in commit order, and an event read past that cursor whose
    # position is out of the asked range is skipped here. The range's end cannot stop the read
    # early for the same reason: the read goes to the end of what is readable.
    cursor = eventstore.Checkpoint(0, max(from_position - 1, 0))
    connection = await amqp.connect(amqp_url, name="callsctl-replay")
    async with connection, await connect(database_url) as conn:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await topology.declare_queue(channel, spec)
        while True:
            batch = await read_after(conn, cursor, types)
            if not batch:
                break
            cursor = batch.checkpoint
            chosen = [
                e
                for e in batch
                if (e.position or 0) >= from_position
                and (to_position is None or (e.position or 0) <= to_position)
                and (since is None or e.occurred_at >= since)
            ]
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        amqp.to_message(e), routing_key=spec.name, mandatory=True
                    )
                    for e in chosen
                )
            )
            if chosen:
                positions = [e.position or 0 for e in chosen]
                first = min(positions) if first is None else min(first, *positions)
                last = max(positions) if last is None else max(last, *positions)
                published += len(chosen)
            if progress is not None:
                progress(published, cursor.position)
        await channel.close()
    after = cursor.position
    return Replayed(spec.name, types, published, first, last, after)
