"""What an operator asks first: how far behind is each reader of the event store, how many
events wait for the relay, and how many messages wait in each queue."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Final

import aiormq.exceptions
import psycopg
from calls_platform import amqp
from calls_platform.db import Conn, connect
from calls_platform.relay import CHECKPOINT as RELAY_CHECKPOINT

# Every queue the services declare (consumer queues and the dead letters).
KNOWN_QUEUES: Final = (
    "dialer.requests",
    "dialer.control",
    "recordings.requests",
    "webhooks.events",
    "gateway.inbox",
    amqp.DEAD_LETTER_QUEUE,
)
# Tables holding readers' checkpoints (name, position): the event store's (the relay) and
# the call log's (its projector).
CHECKPOINT_TABLES: Final = ("eventstore.checkpoints", "call_log.checkpoints")


@dataclass(frozen=True)
class Checkpoint:
    table: str
    name: str
    position: int
    lag_positions: int
    lag_seconds: float
    """Age of the oldest event this reader has not applied yet (0 when caught up)."""


@dataclass(frozen=True)
class QueueDepth:
    name: str
    messages: int | None
    """Messages ready in the queue; None when the queue does not exist."""
    consumers: int | None


@dataclass(frozen=True)
class Status:
    head: int
    outbox_backlog: int
    """Events committed but not yet relayed to RabbitMQ (head minus the relay's checkpoint)."""
    checkpoints: list[Checkpoint]
    queues: list[QueueDepth]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _lag_seconds(conn: Conn, position: int, head: int) -> float:
    if position >= head:
        return 0.0
    cur = await conn.execute(
        "SELECT extract(epoch FROM now() - occurred_at)::float8 AS age"
        " FROM eventstore.events WHERE position > %s ORDER BY position LIMIT 1",
        (position,),
    )
    row = await cur.fetchone()
    return max(0.0, float(row["age"])) if row else 0.0


async def read_checkpoints(database_url: str) -> tuple[int, list[Checkpoint]]:
    """The event store's head and every known checkpoint with its lag."""
    conn = await connect(database_url)
    async with conn:
        cur = await conn.execute("SELECT coalesce(max(position), 0) AS head FROM eventstore.events")
        row = await cur.fetchone()
        head = int(row["head"]) if row else 0
        checkpoints: list[Checkpoint] = []
        for table in CHECKPOINT_TABLES:
            try:
                cur = await conn.execute(f"SELECT name, position FROM {table} ORDER BY name")
                rows = await cur.fetchall()
            except psycopg.errors.UndefinedTable:
                continue  # that owner's migrations have not run
            for r in rows:
                position = int(r["position"])
                checkpoints.append(
                    Checkpoint(
                        table=table,
                        name=str(r["name"]),
                        position=position,
                        lag_positions=max(0, head - position),
                        lag_seconds=round(await _lag_seconds(conn, position, head), 3),
                    )
                )
    return head, checkpoints


async def queue_depths(amqp_url: str, queues: list[str]) -> list[QueueDepth]:
    """Messages and consumers of each queue, by passive declare (creates nothing)."""
    connection = await amqp.connect(amqp_url, name="callsctl")
    depths: list[QueueDepth] = []
    async with connection:
        for name in queues:
            # a passive declare of a missing queue closes its channel: one channel each
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                depths.append(QueueDepth(name, None, None))
                continue
            result = queue.declaration_result
            depths.append(QueueDepth(name, result.message_count, result.consumer_count))
            with contextlib.suppress(Exception):
                await channel.close()
    return depths


async def gather_status(database_url: str, amqp_url: str | None, queues: list[str]) -> Status:
    (head, checkpoints), depths = await asyncio.gather(
        read_checkpoints(database_url),
        queue_depths(amqp_url, queues) if amqp_url else _no_queues(),
    )
    relay = next(
        (
            c
            for c in checkpoints
            if c.table == "eventstore.checkpoints" and c.name == RELAY_CHECKPOINT
        ),
        None,
    )
    return Status(
        head=head,
        outbox_backlog=relay.lag_positions if relay else head,
        checkpoints=checkpoints,
        queues=depths,
    )


async def _no_queues() -> list[QueueDepth]:
    return []
