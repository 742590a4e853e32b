"""The RabbitMQ topology: every exchange, every consumer queue and its bindings, in one place.

This is the single definition. `declare` creates all of it, idempotently; every service's
`migrate` runs it (so the Kubernetes migration Job does), the outbox relay runs it again before
its first publish, and a consumer declares its own queue at start with `declare_queue(channel,
NAME)` from the same entry. An event published before its consumer ever ran therefore waits in
that consumer's queue instead of being routed nowhere.

A new internal subscriber adds one `QueueSpec` to `QUEUES` (its name, exchange and the event
types it binds) and backfills what happened before with `callsctl replay --queue NAME`.
Removing a binding from here does not unbind it from a running broker (declaring only adds):
unbind by hand (`rabbitmqctl` or the management UI) when one is retired.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from calls_events import (
    BatchCancelRequested,
    BatchPaused,
    BatchRequested,
    BatchResumed,
    CallingPolicySet,
    CallRequested,
    CallStatusReported,
    ConversationReported,
    DoNotCallAdded,
    DoNotCallRemoved,
    RecordingReported,
    event_types,
)

from . import amqp

EVENTS_EXCHANGE: Final = amqp.EVENTS_EXCHANGE
INBOX_EXCHANGE: Final = amqp.INBOX_EXCHANGE
DEAD_LETTER_EXCHANGE: Final = amqp.DEAD_LETTER_EXCHANGE
DEAD_LETTER_QUEUE: Final = amqp.DEAD_LETTER_QUEUE

# The exchanges and their kinds: calls.events carries what the event store holds (routing key
# = event type), calls.inbox what outside systems report for the gateway to record.
EXCHANGES: Final = {
    EVENTS_EXCHANGE: aio_pika.ExchangeType.TOPIC,
    INBOX_EXCHANGE: aio_pika.ExchangeType.TOPIC,
    DEAD_LETTER_EXCHANGE: aio_pika.ExchangeType.FANOUT,
}


@dataclass(frozen=True)
class QueueSpec:
    """A durable quorum consumer queue, dead-lettering to calls.dead-letter after the
    delivery limit, bound to `exchange` once per event type in `bindings`."""

    name: str
    bindings: tuple[str, ...]
    exchange: str = EVENTS_EXCHANGE
    owner: str = ""
    """The service that consumes it (documentation, `callsctl status`)."""


DIALER_REQUESTS: Final = "dialer.requests"
DIALER_CONTROL: Final = "dialer.control"
RECORDINGS_REQUESTS: Final = "recordings.requests"
GATEWAY_INBOX: Final = "gateway.inbox"
WEBHOOKS_EVENTS: Final = "webhooks.events"

QUEUES: Final[tuple[QueueSpec, ...]] = (
    # calls to dial (one by one, or a batch's in its request), carrier reports that reveal a
    # lost answer's SID (and that a recorded call ended), and recording reports (a call whose
    # recording callback came needs no listing)
    QueueSpec(
        DIALER_REQUESTS,
        (
            CallRequested.TYPE,
            BatchRequested.TYPE,
            CallStatusReported.TYPE,
            RecordingReported.TYPE,
        ),
        owner="dialer",
    ),
    # cancels, and the campaign controls (pause, resume, do-not-call, calling policy), get a
    # queue of their own so they never wait behind a backlog of requests (thousands of single
    # calls, or a large batch's one message): dialing of a canceled or paused batch stops
    # within a second
    QueueSpec(
        DIALER_CONTROL,
        (
            BatchCancelRequested.TYPE,
            BatchPaused.TYPE,
            BatchResumed.TYPE,
            DoNotCallAdded.TYPE,
            DoNotCallRemoved.TYPE,
            CallingPolicySet.TYPE,
        ),
        owner="dialer",
    ),
    QueueSpec(RECORDINGS_REQUESTS, (RecordingReported.TYPE,), owner="recordings"),
    QueueSpec(
        GATEWAY_INBOX, (ConversationReported.TYPE,), exchange=INBOX_EXCHANGE, owner="gateway"
    ),
    # every event type: the webhooks service follows each call's stream version by version
    # (a missing one is a gap the stream waits on). Note that this queue takes every event, so
    # the broker never returns one: a deleted consumer queue is made up for by that consumer's
    # intake watchdog (or `callsctl replay`), not by the relay holding.
    QueueSpec(WEBHOOKS_EVENTS, tuple(sorted(event_types())), owner="webhooks"),
)


class UnknownQueue(KeyError):
    """A queue name the topology does not define."""


def queue(name: str, queues: Iterable[QueueSpec] = QUEUES) -> QueueSpec:
    """The definition of the queue called `name`."""
    for spec in queues:
        if spec.name == name:
            return spec
    known = ", ".join(spec.name for spec in queues)
    raise UnknownQueue(f"no queue {name!r} in the topology (known: {known})")


def subscribed_types(queues: Iterable[QueueSpec] = QUEUES) -> frozenset[str]:
    """The event types at least one queue binds on calls.events: an event of one of these
    that the broker cannot route means a queue or binding is missing."""
    return frozenset(
        event_type
        for spec in queues
        if spec.exchange == EVENTS_EXCHANGE
        for event_type in spec.bindings
    )


def queue_names(queues: Iterable[QueueSpec] = QUEUES) -> tuple[str, ...]:
    """Every queue the topology declares, the dead letters last."""
    return (*(spec.name for spec in queues), DEAD_LETTER_QUEUE)


async def declare_exchanges(channel: AbstractChannel) -> dict[str, AbstractExchange]:
    """Every exchange, and the dead-letter queue bound to its exchange."""
    exchanges = {
        name: await channel.declare_exchange(name, kind, durable=True)
        for name, kind in EXCHANGES.items()
    }
    await amqp.declare_dead_letters(channel)
    return exchanges


async def declare_queue(
    channel: AbstractChannel, spec: QueueSpec | str, *, queues: Iterable[QueueSpec] = QUEUES
) -> AbstractQueue:
    """Declare one consumer queue of the topology (and what it needs) and bind it."""
    if isinstance(spec, str):
        spec = queue(spec, queues)
    return await amqp.declare_consumer_queue(
        channel, spec.name, spec.bindings, exchange=spec.exchange
    )


async def declare(
    channel: AbstractChannel, queues: Iterable[QueueSpec] = QUEUES
) -> dict[str, AbstractExchange]:
    """Declare the whole topology (idempotent); return the exchanges by name."""
    exchanges = await declare_exchanges(channel)
    for spec in queues:
        await declare_queue(channel, spec)
    return exchanges


async def declare_on(amqp_url: str, queues: Iterable[QueueSpec] = QUEUES) -> None:
    """Connect to `amqp_url`, declare the whole topology, disconnect (what `migrate` runs)."""
    connection = await aio_pika.connect(amqp_url, client_properties={"connection_name": "topology"})
    async with connection, connection.channel() as channel:
        await declare(channel, queues)
