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

from calls_events import Envelope
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


async def read_after(conn: Conn, after: int, types: Sequence[str]) -> list[Envelope]:
    """The next events of `types` after `after`, in the store's order. The replay's only read
    of the event store: a change to the store's cursor changes this function alone."""
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
    after = max(from_position - 1, 0)
    connection = await amqp.connect(amqp_url, name="callsctl-replay")
    async with connection, await connect(database_url) as conn:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await topology.declare_queue(channel, spec)
        while True:
            batch = await read_after(conn, after, types)
            if to_position is not None:
                batch = [e for e in batch if (e.position or 0) <= to_position]
            if not batch:
                break
            after = batch[-1].position or after
            chosen = [e for e in batch if since is None or e.occurred_at >= since]
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        amqp.to_message(e), routing_key=spec.name, mandatory=True
                    )
                    for e in chosen
                )
            )
            if chosen:
                first = first if first is not None else chosen[0].position
                last = chosen[-1].position
                published += len(chosen)
            if progress is not None:
                progress(published, after)
        await channel.close()
    return Replayed(spec.name, types, published, first, last, after)
