"""The relay's publish step: a batch of stored events to `calls.events`, each persistent,
mandatory and confirmed by the broker, and what to do when the broker routes one nowhere.

A publisher confirm alone says nothing about routing: the broker confirms a message that no
queue took. Published `mandatory`, such a message is returned first (aio-pika raises
`PublishError` for it on a channel opened with `on_return_raises=True`). A returned event of
a type the topology binds means a queue or binding that should exist is missing: the relay
must not pass it, or its consumer never sees it. A returned event of a type no queue binds is
one nobody subscribes to (the call log reads the store itself): it is passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import aio_pika.exceptions
from aio_pika.abc import AbstractExchange
from calls_events import Envelope

from . import amqp


@dataclass(frozen=True)
class Unroutable:
    """An event the broker returned although the topology binds its type."""

    position: int
    event_type: str
    event_id: str
    reply: str
    since: datetime

    def describe(self) -> str:
        return (
            f"event at position {self.position} ({self.event_type}, {self.event_id}) is"
            f" unroutable on {amqp.EVENTS_EXCHANGE}: {self.reply}; holding and retrying"
            f" since {self.since.isoformat()} (is its queue declared? `callsctl migrate`)"
        )


@dataclass(frozen=True)
class Published:
    passed: Sequence[Envelope]
    """The leading events of the batch, in order, that were confirmed (or that nobody
    subscribes to): the checkpoint may move past the last of them."""
    held: Unroutable | None
    """The first event that must not be passed, if any."""


async def publish_batch(
    exchange: AbstractExchange, batch: Sequence[Envelope], subscribed: Collection[str]
) -> Published:
    """Publish `batch` in order (pipelined, all confirmed before returning). A broker error
    (connection lost, nack) is raised: nothing in the batch is passed."""
    results = await asyncio.gather(
        *(
            exchange.publish(amqp.to_message(e), routing_key=e.event_type, mandatory=True)
            for e in batch
        ),
        return_exceptions=True,
    )
    for index, (envelope, result) in enumerate(zip(batch, results, strict=True)):
        if isinstance(result, aio_pika.exceptions.PublishError):
            if envelope.event_type not in subscribed:
                continue
            return Published(
                passed=batch[:index],
                held=Unroutable(
                    position=envelope.position or 0,
                    event_type=envelope.event_type,
                    event_id=str(envelope.event_id),
                    reply=str(result),
                    since=datetime.now(UTC),
                ),
            )
        if isinstance(result, BaseException):
            raise result
    return Published(passed=batch, held=None)


class RelayHealth:
    """What the relay's process says on /readyz: whether the relay is passing events, and
    if not, why. Any composition root that runs a relay adds `checks()` to its readiness and
    `reasons()` to its readiness reasons."""

    def __init__(self) -> None:
        self.held: Unroutable | None = None

    def hold(self, unroutable: Unroutable) -> None:
        if self.held is None or self.held.position != unroutable.position:
            self.held = unroutable

    def clear(self) -> None:
        self.held = None

    def checks(self) -> Mapping[str, bool]:
        return {"relay_routing": self.held is None}

    def reasons(self) -> Mapping[str, str]:
        return {} if self.held is None else {"relay_routing": self.held.describe()}
