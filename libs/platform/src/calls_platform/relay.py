"""The outbox relay: publishes committed events from the event store to RabbitMQ.

Runs in every service that appends events; a leadership lock lets exactly one replica relay
at a time. Before its first publish it declares the whole topology (calls_platform.topology),
so an event appended before its consumer ever started waits in that consumer's queue. Events
are published in position order as persistent, mandatory messages, each confirmed by the
broker, and the relay's checkpoint only moves past an event once it is confirmed and routed
(calls_platform.publishing: an event the broker returns holds the relay until its queue is
there). A crash between confirm and checkpoint republishes a few events: consumers are
idempotent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

import aio_pika.exceptions
import psycopg
import structlog
from aio_pika.abc import AbstractExchange, AbstractRobustConnection

from . import eventstore, leader, topology
from .db import Pool
from .metrics import EVENTS_PUBLISHED, EVENTS_UNROUTABLE, OUTBOX_BACKLOG
from .notify import AppendListener, wait_for
from .publishing import RelayHealth, Unroutable, publish_batch

log = structlog.get_logger(__name__)

CHECKPOINT: Final = "amqp-relay"


class OutboxRelay:
    def __init__(
        self,
        pool: Pool,
        broker: AbstractRobustConnection,
        listener: AppendListener,
        *,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        health: RelayHealth | None = None,
        queues: Sequence[topology.QueueSpec] = topology.QUEUES,
        unroutable_backoff_seconds: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        self._pool = pool
        self._broker = broker
        self._wakeup = listener.subscribe()
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self.health = health or RelayHealth()
        self._queues = queues
        self._subscribed = topology.subscribed_types(queues)
        self._backoff = unroutable_backoff_seconds
        self._next_backoff = unroutable_backoff_seconds[0]

    async def run(self) -> None:
        """Relay forever (call under leadership)."""
        # closed when the relay is cancelled (leadership lost), or it would stay open, and be
        # restored by the robust connection, for as long as the process lives
        async with self._broker.channel(publisher_confirms=True, on_return_raises=True) as channel:
            exchanges = await topology.declare(channel, self._queues)
            exchange = exchanges[topology.EVENTS_EXCHANGE]
            position = await self._checkpoint()
            log.info("relay_started", position=position)
            try:
                while True:
                    position = await self._relay_batch(exchange, position)
            finally:
                # no longer relaying (leadership lost): nothing of this process's is held
                self.health.clear()

    async def _relay_batch(self, exchange: AbstractExchange, position: int) -> int:
        """Publish the next batch after `position`; return the new checkpoint."""
        try:
            async with self._pool.connection() as conn:
                batch = await eventstore.read_all(conn, after=position, limit=self._batch_size)
                head = await eventstore.head_position(conn)
            OUTBOX_BACKLOG.set(head - position)
            if not batch:
                await wait_for(self._wakeup, self._poll_seconds)
                return position
            published = await publish_batch(exchange, batch, self._subscribed)
            if published.passed:
                position = published.passed[-1].position or position
                await self._save_checkpoint(position)
                EVENTS_PUBLISHED.inc(len(published.passed))
            if published.held is not None:
                await self._hold(published.held)
            else:
                self.health.clear()
                self._next_backoff = self._backoff[0]
        except (
            aio_pika.exceptions.AMQPError,
            aio_pika.exceptions.ChannelInvalidStateError,  # a RuntimeError: channel closed
            ConnectionError,
        ) as exc:
            # the robust connection reconnects by itself; events stay in the store meanwhile
            log.warning("relay_broker_unavailable", error=str(exc), position=position)
            await asyncio.sleep(1)
        except psycopg.OperationalError as exc:
            log.warning("relay_database_unavailable", error=str(exc), position=position)
            await asyncio.sleep(1)
        return position

    async def _hold(self, held: Unroutable) -> None:
        """An event its queue did not get: keep the checkpoint before it, retry after a
        back-off (doubling up to the maximum); /readyz says why meanwhile."""
        self.health.hold(held)
        EVENTS_UNROUTABLE.labels(held.event_type).inc()
        log.error(
            "relay_event_unroutable",
            position=held.position,
            event_type=held.event_type,
            event_id=held.event_id,
            reply=held.reply,
            retry_in_seconds=self._next_backoff,
        )
        await asyncio.sleep(self._next_backoff)
        self._next_backoff = min(self._next_backoff * 2, self._backoff[1])

    async def _checkpoint(self) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT position FROM eventstore.checkpoints WHERE name = %s", (CHECKPOINT,)
            )
            row = await cur.fetchone()
        return int(row["position"]) if row else 0

    async def _save_checkpoint(self, position: int) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO eventstore.checkpoints (name, position) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (CHECKPOINT, position),
            )


def start_relay(
    database_url: str,
    pool: Pool,
    broker: AbstractRobustConnection,
    *,
    health: RelayHealth | None = None,
) -> list[asyncio.Task[None]]:
    """The tasks that make this process a candidate relay: a LISTEN for appends, and the relay
    itself, run only while this process holds the `outbox-relay` leadership lock. `health`
    (for the process's /readyz) learns when the relay holds an unroutable event."""
    listener = AppendListener(database_url)
    relay = OutboxRelay(pool, broker, listener, health=health)
    return [
        asyncio.create_task(listener.run(), name="append-listener"),
        asyncio.create_task(
            leader.run_as_leader(database_url, "outbox-relay", relay.run), name="outbox-relay"
        ),
    ]
