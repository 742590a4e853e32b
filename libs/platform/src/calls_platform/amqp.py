"""RabbitMQ topology and the two ways services touch it: publishing and consuming events.

Topology: every event is published to the durable topic exchange `calls.events` with its
event type as routing key. Each consumer owns one durable quorum queue bound to the types it
handles, with a delivery limit; messages that keep failing, or that cannot be parsed, go to
the dead-letter exchange `calls.dead-letter` and wait in the `calls.dead-letter` queue.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Final

import aio_pika
import aio_pika.exceptions
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.connection import make_url
from calls_events import Envelope, UnknownEventType
from pydantic import ValidationError

from .logging import bind_correlation
from .metrics import QUEUE_CONSUMER_LAG_SECONDS, QUEUE_MESSAGES_CONSUMED

log = structlog.get_logger(__name__)

EVENTS_EXCHANGE: Final = "calls.events"
# Where systems outside the HTTP API publish reports for the gateway to record (see
# gateway.inbox): separate from calls.events, which carries only what the event store holds.
INBOX_EXCHANGE: Final = "calls.inbox"
DEAD_LETTER_EXCHANGE: Final = "calls.dead-letter"
DEAD_LETTER_QUEUE: Final = "calls.dead-letter"
DELIVERY_LIMIT: Final = 5


async def connect(url: str, *, name: str = "calls") -> AbstractRobustConnection:
    """A connection that reconnects by itself and restores its channels, queues and consumers.

    `name` is how the connection shows in RabbitMQ's connection list.
    """
    connection = aio_pika.RobustConnection(
        make_url(url), client_properties={"connection_name": name}
    )
    try:
        await connection.connect()
    except BaseException:
        # aio_pika.connect_robust drops a connection that failed to connect, and its __del__
        # then schedules a close nobody awaits; this one is closed here, while it can be
        await connection.close()
        raise
    return connection


async def declare_events_exchange(channel: AbstractChannel) -> AbstractExchange:
    return await channel.declare_exchange(
        EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )


async def declare_dead_letters(channel: AbstractChannel) -> AbstractQueue:
    """The dead-letter exchange and the queue where dead letters wait."""
    dead_letters = await channel.declare_exchange(
        DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
    )
    dlq = await channel.declare_queue(
        DEAD_LETTER_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dlq.bind(dead_letters)
    return dlq


async def declare_consumer_queue(
    channel: AbstractChannel,
    name: str,
    event_types: Iterable[str],
    *,
    exchange: str = EVENTS_EXCHANGE,
) -> AbstractQueue:
    """A consumer queue bound to `exchange` once per event type. The services' queues are
    defined in `calls_platform.topology`, which declares them through this."""
    events = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    await declare_dead_letters(channel)
    queue = await channel.declare_queue(
        name,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-delivery-limit": DELIVERY_LIMIT,
        },
    )
    for event_type in event_types:
        await queue.bind(events, routing_key=event_type)
    return queue


async def _parsed(queue: str, message: AbstractIncomingMessage) -> Envelope | None:
    """The message's event, counted as taken; None (and dead-lettered) if it is not one."""
    try:
        envelope = Envelope.model_validate_json(message.body)
        envelope.event()
    except (ValidationError, UnknownEventType, json.JSONDecodeError) as exc:
        log.error("message_unparseable", queue=queue, error=str(exc))
        QUEUE_MESSAGES_CONSUMED.labels(queue, "unparseable").inc()
        await message.reject(requeue=False)
        return None
    _taken(queue, envelope)
    return envelope


def _taken(queue: str, envelope: Envelope) -> None:
    """Consumer lag: how long the event took from the store to its consumer."""
    age = (datetime.now(UTC) - envelope.occurred_at).total_seconds()
    QUEUE_CONSUMER_LAG_SECONDS.labels(queue).set(max(0.0, age))


def to_message(envelope: Envelope) -> aio_pika.Message:
    return aio_pika.Message(
        body=envelope.model_dump_json().encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(envelope.event_id),
        type=envelope.event_type,
        correlation_id=envelope.correlation_id,
        headers={
            "event_type": envelope.event_type,
            "event_version": envelope.event_version,
            "organization_id": envelope.organization_id,
            "position": envelope.position,
        },
    )


# Handler runs in progress, by consumer tag, so stopping can wait for them (see stop_consuming).
_IN_FLIGHT: dict[str, set[asyncio.Task[Any]]] = {}

Handler = Callable[[Envelope], Awaitable[None]]
BatchHandler = Callable[[list[Envelope]], Awaitable[None]]


async def consume(
    queue: AbstractQueue,
    handler: Handler,
    *,
    permanent_errors: tuple[type[Exception], ...] = (),
) -> str:
    """Consume `queue`, calling `handler` for each event; ack only after it returns.

    A handler that raises leaves the message for redelivery (up to the queue's delivery limit,
    then it is dead-lettered). A message that is not a valid event, or whose handler raises one
    of `permanent_errors`, is dead-lettered at once. Handlers must be idempotent: delivery is at
    least once.
    """

    in_flight: set[asyncio.Task[Any]] = set()

    async def on_message(message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            in_flight.add(task)
        try:
            await handle(message)
        finally:
            in_flight.discard(task)

    async def handle(message: AbstractIncomingMessage) -> None:
        envelope = await _parsed(queue.name, message)
        if envelope is None:
            return
        with bind_correlation(envelope.correlation_id):
            try:
                await handler(envelope)
            except permanent_errors as exc:
                log.error("message_refused", queue=queue.name, error=str(exc))
                QUEUE_MESSAGES_CONSUMED.labels(queue.name, "refused").inc()
                await message.reject(requeue=False)
                return
            except Exception:
                log.exception(
                    "message_handler_failed",
                    queue=queue.name,
                    event_type=envelope.event_type,
                    event_id=str(envelope.event_id),
                )
                # back off before handing it back, so a dependency that is down for a moment
                # (PostgreSQL restarting) does not burn through the delivery limit
                count = (message.headers or {}).get("x-delivery-count", 0)
                deliveries = count if isinstance(count, int) else 0

                await asyncio.sleep(min(0.5 * 2**deliveries, 10.0))
                QUEUE_MESSAGES_CONSUMED.labels(queue.name, "retried").inc()
                await message.nack(requeue=True)
                return
            await message.ack()
            QUEUE_MESSAGES_CONSUMED.labels(queue.name, "handled").inc()

    consumer_tag = await queue.consume(on_message)
    _IN_FLIGHT[consumer_tag] = in_flight
    return consumer_tag


async def stop_consuming(queue: AbstractQueue, consumer_tag: str, *, drain_seconds: float) -> None:
    """Stop taking messages from `queue`, then give the handlers already running (started by
    `consume`) up to `drain_seconds` to finish and ack. Whatever is still unacked after that
    goes back to the queue when the channel closes, for the next consumer."""
    await queue.cancel(consumer_tag)
    running = _IN_FLIGHT.pop(consumer_tag, set())
    pending = [task for task in running if not task.done()]
    if not pending:
        return
    log.info("consumer_draining", queue=queue.name, in_flight=len(pending))
    _, late = await asyncio.wait(pending, timeout=drain_seconds)
    if late:
        log.warning("consumer_drain_timed_out", queue=queue.name, unfinished=len(late))


async def take_waiting(queue: AbstractQueue, handler: BatchHandler, *, max_batch: int = 500) -> int:
    """Handle what is waiting in `queue` right now, before the caller starts anything that must
    not run ahead of it; return how many events were handled.

    Takes messages one by one (basic.get) until the queue answers empty, hands them to
    `handler` up to `max_batch` at a time and acks each batch after the handler returns. An
    unparseable message is dead-lettered as `consume` does. A handler that raises leaves its
    batch unacked: it goes back to the queue when the channel closes, and the error propagates
    (the caller cannot go on as if the queue had been taken). Meant for a consumer's queue while
    no consumer of this process is on it yet, on a channel of its own."""
    taken = 0
    while True:
        batch: list[tuple[Envelope, AbstractIncomingMessage]] = []
        while len(batch) < max_batch:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            envelope = await _parsed(queue.name, message)
            if envelope is not None:
                batch.append((envelope, message))
        if not batch:
            return taken
        await handler([envelope for envelope, _ in batch])
        await batch[-1][1].ack(multiple=True)  # the channel is this call's alone
        QUEUE_MESSAGES_CONSUMED.labels(queue.name, "handled").inc(len(batch))
        taken += len(batch)


async def consume_in_batches(
    queue: AbstractQueue,
    handler: BatchHandler,
    *,
    max_batch: int = 500,
    max_wait_seconds: float = 0.02,
) -> str:
    """Like `consume`, but hands the handler up to `max_batch` events at once (whatever arrived
    within `max_wait_seconds` of the first), so it can take them in one transaction. All are
    acked after the handler returns, or all handed back if it raises, with one frame
    (`multiple`: up to the batch's last delivery tag), so the queue must be the only one
    consumed on its channel. Set the channel's prefetch to at least `max_batch`."""
    pending: list[tuple[Envelope, AbstractIncomingMessage]] = []
    lock = asyncio.Lock()
    timer: asyncio.Task[None] | None = None

    async def flush() -> None:
        nonlocal pending
        async with lock:
            batch, pending = pending[:max_batch], pending[max_batch:]
            if not batch:
                return
            try:
                await handler([envelope for envelope, _ in batch])
            except Exception:
                log.exception("message_batch_handler_failed", queue=queue.name, size=len(batch))
                await asyncio.sleep(1.0)  # a dependency down for a moment: don't spin
                await settle(batch, ok=False)
                QUEUE_MESSAGES_CONSUMED.labels(queue.name, "retried").inc(len(batch))
                return
            await settle(batch, ok=True)
            QUEUE_MESSAGES_CONSUMED.labels(queue.name, "handled").inc(len(batch))

    async def settle(batch: list[tuple[Envelope, AbstractIncomingMessage]], ok: bool) -> None:
        # every delivery before the batch's last is in it or was settled already (pending is in
        # delivery order, an unparseable message is rejected on arrival): one frame settles all
        # (a frame each was most of a busy consumer's writes to the socket)
        last = max((message for _, message in batch), key=lambda m: m.delivery_tag or 0)
        try:
            await (last.ack(multiple=True) if ok else last.nack(multiple=True, requeue=True))
        except (
            aio_pika.exceptions.AMQPError,
            aio_pika.exceptions.ChannelInvalidStateError,
            ConnectionError,
        ) as exc:
            # the channel they came on is gone (broker restarted, connection lost): the broker
            # hands them out again on the restored channel, and handlers are idempotent
            log.warning("message_batch_not_settled", queue=queue.name, error=str(exc))

    async def flush_later() -> None:
        nonlocal timer
        try:
            await asyncio.sleep(max_wait_seconds)
            while pending:
                await flush()
        finally:
            # whatever happened, the next message schedules a flush again: a timer left set
            # by a failed flush would leave every later message pending, unacked, for good
            timer = None

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal timer
        envelope = await _parsed(queue.name, message)
        if envelope is None:
            return
        pending.append((envelope, message))
        if len(pending) >= max_batch:
            await flush()
        elif timer is None:
            timer = asyncio.create_task(flush_later())

    return await queue.consume(on_message)


class BrokerHealth:
    """Whether a robust connection is up right now, for /readyz."""

    def __init__(self) -> None:
        self.connected = False

    def watch(self, connection: AbstractRobustConnection) -> None:
        self.connected = not connection.is_closed
        connection.reconnect_callbacks.add(lambda *_: setattr(self, "connected", True))
        connection.close_callbacks.add(lambda *_: setattr(self, "connected", False))
