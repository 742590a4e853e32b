"""The dead-letter queue: what is in it, and sending messages back where they died.

Messages that keep failing (past a queue's delivery limit) or cannot be parsed are
dead-lettered by RabbitMQ to `calls.dead-letter` (see calls_platform.amqp), which records in
their `x-death` header the queue they died in, why, and how often. Re-driving publishes a copy
to that queue (through the default exchange, persistent, with publisher confirms and
`mandatory`, so a queue that no longer exists is an error, not a silent drop) and acks the
dead letter only once the broker has confirmed the copy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import aio_pika
import aio_pika.exceptions
from aio_pika.abc import AbstractIncomingMessage
from calls_platform import amqp

# Headers RabbitMQ adds when it dead-letters or redelivers; not carried over on a re-drive.
_BROKER_HEADERS = ("x-death", "x-delivery-count")
_BROKER_HEADER_PREFIXES = ("x-first-death-", "x-last-death-")


@dataclass(frozen=True)
class DeadLetter:
    event_id: str | None
    event_type: str | None
    queue: str | None
    """The queue the message died in (where a re-drive sends it)."""
    routing_key: str | None
    reason: str | None
    """rejected (refused or unparseable), delivery_limit, expired, maxlen."""
    count: int
    died_at: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Redriven:
    letter: DeadLetter
    ok: bool
    error: str | None = None


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def describe(message: AbstractIncomingMessage) -> DeadLetter:
    headers: Mapping[str, Any] = message.headers or {}
    deaths = headers.get("x-death")
    death: Mapping[str, Any] = deaths[0] if isinstance(deaths, list) and deaths else {}
    routing_keys = death.get("routing-keys")
    routing_key = (
        _text(routing_keys[0])
        if isinstance(routing_keys, list) and routing_keys
        else message.routing_key
    )
    died = death.get("time")
    return DeadLetter(
        event_id=message.message_id,
        event_type=message.type or _text(headers.get("event_type")),
        queue=_text(death.get("queue") or headers.get("x-first-death-queue")),
        routing_key=routing_key,
        reason=_text(death.get("reason") or headers.get("x-first-death-reason")),
        count=int(death.get("count") or 1),
        died_at=died.isoformat() if isinstance(died, datetime) else _text(died),
    )


def _redrive_copy(message: AbstractIncomingMessage) -> aio_pika.Message:
    headers = {
        k: v
        for k, v in (message.headers or {}).items()
        if k not in _BROKER_HEADERS and not k.startswith(_BROKER_HEADER_PREFIXES)
    }
    return aio_pika.Message(
        body=message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        type=message.type,
        timestamp=message.timestamp,
        app_id=message.app_id,
    )


async def _take(
    amqp_url: str,
    limit: int | None,
    each: Callable[[aio_pika.abc.AbstractChannel, AbstractIncomingMessage], Awaitable[bool]],
) -> None:
    """Get dead letters one by one (up to `limit`) and hand each to `each`, which says whether
    it took the message (acked it). The others stay unacked, so the next get never returns
    them again, and go back to the queue when the channel closes. A message that dies again
    while we work (same event id, seen before) ends the walk instead of cycling.

    Not bounded by the queue's reported depth: a quorum queue updates that figure only every
    few seconds."""
    connection = await amqp.connect(amqp_url, name="callsctl-dlq")
    async with connection:
        # on_return_raises: without it a returned (unroutable) copy is confirmed like any other
        # and the dead letter would be acked, lost
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            queue = await channel.declare_queue(amqp.DEAD_LETTER_QUEUE, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return  # no service has declared it yet: nothing ever died
        seen: set[str] = set()
        taken = 0
        try:
            while limit is None or taken < limit:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                if message.message_id is not None:
                    if message.message_id in seen:
                        break  # re-driven and dead again already
                    seen.add(message.message_id)
                taken += 1
                await each(channel, message)
        finally:
            # whatever was not acked goes back to the dead-letter queue
            with contextlib.suppress(Exception):
                await channel.close()


async def list_dead_letters(amqp_url: str, *, limit: int | None = 100) -> list[DeadLetter]:
    letters: list[DeadLetter] = []

    async def keep(_: aio_pika.abc.AbstractChannel, message: AbstractIncomingMessage) -> bool:
        letters.append(describe(message))
        return False

    await _take(amqp_url, limit, keep)
    return letters


async def redrive(amqp_url: str, *, event_ids: Collection[str] | None = None) -> list[Redriven]:
    """Send dead letters back to the queue each died in: those whose event id is in
    `event_ids`, or all of them when it is None."""
    done: list[Redriven] = []

    async def send_back(
        channel: aio_pika.abc.AbstractChannel, message: AbstractIncomingMessage
    ) -> bool:
        letter = describe(message)
        if event_ids is not None and letter.event_id not in event_ids:
            return False
        if not letter.queue:
            done.append(Redriven(letter, ok=False, error="no x-death queue: not dead-lettered"))
            return False
        try:
            # awaits the broker's confirm; a return (no such queue) raises DeliveryError
            await channel.default_exchange.publish(
                _redrive_copy(message), routing_key=letter.queue, mandatory=True
            )
        except aio_pika.exceptions.DeliveryError as exc:
            done.append(Redriven(letter, ok=False, error=f"not delivered: {exc}"))
            return False
        await message.ack()
        done.append(Redriven(letter, ok=True))
        return True

    await _take(amqp_url, None, send_back)
    return done
