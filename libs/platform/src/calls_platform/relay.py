"""The outbox relay: publishes committed events from the event store to RabbitMQ.

Runs in its own process (`python -m calls_platform.relay`, with /healthz, /readyz and
/metrics) or inside every service that appends events (`RELAY_IN_PROCESS`, default true); a
leadership lock lets exactly one relay run at a time, wherever it runs. Before its first
publish it declares the whole topology (calls_platform.topology), so an event appended before
its consumer ever started waits in that consumer's queue. Events are published in commit order
((transaction_id, position), see `eventstore`) as persistent, mandatory messages, each
confirmed by the broker, and the relay's checkpoint only moves past an event once it is
confirmed and routed (calls_platform.publishing: an event the broker returns holds the relay
until its queue is there). A crash between confirm and checkpoint republishes a few events:
consumers are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Final

import aio_pika.exceptions
import psycopg
import structlog
from aio_pika.abc import AbstractExchange, AbstractRobustConnection
from aiohttp import web

from . import amqp, eventstore, leader, topology
from .db import Pool, is_reachable, open_pool
from .eventstore import Checkpoint
from .http import new_app
from .lifecycle import serve, stop_tasks
from .logging import configure_logging
from .metrics import EVENTS_PUBLISHED, EVENTS_UNROUTABLE, OUTBOX_BACKLOG
from .notify import AppendListener, wait_for
from .publishing import RelayHealth, Unroutable, publish_batch
from .settings import DEFAULT_AMQP_URL, DEFAULT_DATABASE_URL

log = structlog.get_logger(__name__)

CHECKPOINT: Final = "amqp-relay"
# how often the lag gauges (one count query, one pg_stat_activity query) are refreshed
_LAG_EVERY_SECONDS: Final = 1.0


class OutboxRelay:
    def __init__(
        self,
        pool: Pool,
        broker: AbstractRobustConnection,
        listener: AppendListener | None = None,
        *,
        batch_size: int = 500,
        poll_seconds: float = 0.02,
        health: RelayHealth | None = None,
        queues: Sequence[topology.QueueSpec] = topology.QUEUES,
        unroutable_backoff_seconds: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        self._pool = pool
        self._broker = broker
        self._wakeup = listener.subscribe() if listener else asyncio.Event()
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._lag_observed = 0.0
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
            async with self._pool.connection() as conn:
                checkpoint = await eventstore.load_checkpoint(conn, CHECKPOINT)
            log.info("relay_started", checkpoint=checkpoint)
            try:
                while True:
                    checkpoint = await self._relay_batch(exchange, checkpoint)
            finally:
                # no longer relaying (leadership lost): nothing of this process's is held
                self.health.clear()

    async def _relay_batch(self, exchange: AbstractExchange, checkpoint: Checkpoint) -> Checkpoint:
        """Publish the next batch after `checkpoint`; return the new checkpoint."""
        try:
            async with self._pool.connection() as conn:
                batch = await eventstore.read_all(conn, after=checkpoint, limit=self._batch_size)
            await self._observe(checkpoint)
            if not batch:
                await wait_for(self._wakeup, self._poll_seconds)
                return checkpoint
            published = await publish_batch(exchange, batch, self._subscribed)
            if published.passed:
                checkpoint = batch.checkpoints[len(published.passed) - 1]
                async with self._pool.connection() as conn:
                    await eventstore.save_checkpoint(conn, CHECKPOINT, checkpoint)
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
            log.warning("relay_broker_unavailable", error=str(exc), checkpoint=checkpoint)
            await asyncio.sleep(1)
        except psycopg.OperationalError as exc:
            log.warning("relay_database_unavailable", error=str(exc), checkpoint=checkpoint)
            await asyncio.sleep(1)
        return checkpoint

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

    async def _observe(self, checkpoint: Checkpoint) -> None:
        now = time.monotonic()
        if now - self._lag_observed < _LAG_EVERY_SECONDS:
            return
        self._lag_observed = now
        OUTBOX_BACKLOG.set(await eventstore.observe_lag(self._pool, "amqp-relay", checkpoint))


def in_process() -> bool:
    """RELAY_IN_PROCESS (default true): whether services that append also run a relay
    candidate. Set it to false where the relay runs as its own process or deployment."""
    return os.environ.get("RELAY_IN_PROCESS", "true").lower() not in ("false", "0", "no")


def start_relay(
    database_url: str,
    pool: Pool,
    broker: AbstractRobustConnection,
    *,
    health: RelayHealth | None = None,
) -> list[asyncio.Task[None]]:
    """The tasks that make this process a candidate relay: a LISTEN for wake-ups, and the
    relay itself, run only while this process holds the `outbox-relay` leadership lock. None
    when RELAY_IN_PROCESS is false. `health` (for the process's /readyz) learns when the relay
    holds an unroutable event."""
    if not in_process():
        return []
    return _relay_tasks(database_url, pool, broker, health=health)


def _relay_tasks(
    database_url: str,
    pool: Pool,
    broker: AbstractRobustConnection,
    *,
    health: RelayHealth | None = None,
) -> list[asyncio.Task[None]]:
    listener = AppendListener(database_url)
    relay = OutboxRelay(pool, broker, listener, health=health)
    return [
        asyncio.create_task(listener.run(), name="append-listener"),
        asyncio.create_task(
            leader.run_as_leader(database_url, "outbox-relay", relay.run), name="outbox-relay"
        ),
    ]


def create_app(database_url: str, amqp_url: str) -> web.Application:
    """The relay as a process of its own: a relay candidate plus the operational routes."""
    broker_health = amqp.BrokerHealth()
    relay_health = RelayHealth()
    pool_key: web.AppKey[Pool] = web.AppKey("relay_pool")

    async def readiness() -> Mapping[str, bool]:
        return {
            "database": await is_reachable(app[pool_key]),
            "broker": broker_health.connected,
            **relay_health.checks(),
        }

    app = new_app(readiness=readiness, reasons=relay_health.reasons)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        # a stack, so that a broker out of reach leaves no pool open
        async with contextlib.AsyncExitStack() as stack:
            pool = await open_pool(database_url, name="relay", max_size=4)
            stack.push_async_callback(pool.close)
            app[pool_key] = pool
            broker = await amqp.connect(amqp_url)
            stack.push_async_callback(broker.close)
            broker_health.watch(broker)
            tasks = _relay_tasks(database_url, pool, broker, health=relay_health)
            stack.push_async_callback(stop_tasks, tasks)
            yield

    app.cleanup_ctx.append(resources)
    return app


def main() -> None:
    """`python -m calls_platform.relay`: DATABASE_URL, AMQP_URL, RELAY_HOST, RELAY_PORT."""
    env = os.environ
    configure_logging(
        "relay", json_logs=env.get("LOG_FORMAT") == "json", level=env.get("LOG_LEVEL", "INFO")
    )
    app = create_app(
        env.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        env.get("AMQP_URL", DEFAULT_AMQP_URL),
    )
    serve(app, host=env.get("RELAY_HOST", "127.0.0.1"), port=int(env.get("RELAY_PORT", "8085")))


if __name__ == "__main__":
    main()
