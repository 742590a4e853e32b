"""Consuming events from RabbitMQ: ack after the handler, redeliver on failure, dead-letter
what cannot be parsed. Against the real broker, in this run's private vhost."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import aio_pika
import pytest
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from calls_events import CallCanceled, Envelope, call_stream
from calls_platform import amqp
from calls_testing import new_org_id

pytestmark = pytest.mark.integration


@pytest.fixture
async def channel(broker: AbstractRobustConnection) -> AbstractChannel:
    channel = await broker.channel()
    await channel.set_qos(prefetch_count=1)
    return channel


def canceled(org: str, reason: str = "batch canceled") -> Envelope:
    call_id = uuid.uuid4()
    return Envelope.wrap(
        CallCanceled(call_id=call_id, reason=reason),
        stream_id=call_stream(call_id),
        organization_id=org,
    )


class Recorder:
    """A handler that records what it was given; fails the first `failures` times."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[Envelope] = []
        self.handled: asyncio.Queue[Envelope] = asyncio.Queue()

    async def __call__(self, envelope: Envelope) -> None:
        self.calls.append(envelope)
        if self.failures:
            self.failures -= 1
            raise RuntimeError("dependency down")
        self.handled.put_nowait(envelope)

    async def next(self) -> Envelope:
        return await asyncio.wait_for(self.handled.get(), 10)


async def publish(channel: AbstractChannel, envelopes: list[Envelope]) -> None:
    exchange = await amqp.declare_events_exchange(channel)
    for envelope in envelopes:
        await exchange.publish(amqp.to_message(envelope), routing_key=envelope.event_type)


async def test_a_handler_that_returns_acks_each_message_once(
    broker: AbstractRobustConnection, channel: AbstractChannel
) -> None:
    name = f"test.acks.{uuid.uuid4().hex}"
    queue = await amqp.declare_consumer_queue(channel, name, ["CallCanceled"])
    org = new_org_id()
    sent = [canceled(org) for _ in range(3)]
    sentinel = canceled(org, "sentinel")
    handler = Recorder()
    await amqp.consume(queue, handler)

    await publish(await broker.channel(), [*sent, sentinel])
    # prefetch is 1, so each delivery proves the one before it was settled
    received = [await handler.next() for _ in range(4)]
    await channel.close()

    assert [e.event_id for e in received] == [e.event_id for e in [*sent, sentinel]]
    assert len(handler.calls) == 4  # none redelivered
    check = await (await broker.channel()).declare_queue(name, passive=True)
    left = []
    while message := await check.get(no_ack=True, fail=False):
        left.append(message.message_id)
    assert set(left) <= {str(sentinel.event_id)}  # only the last may have been in flight


async def test_a_handler_that_raises_gets_the_message_again(
    broker: AbstractRobustConnection, channel: AbstractChannel
) -> None:
    queue = await amqp.declare_consumer_queue(
        channel, f"test.retry.{uuid.uuid4().hex}", ["CallCanceled"]
    )
    envelope = canceled(new_org_id())
    handler = Recorder(failures=1)
    await amqp.consume(queue, handler)

    await publish(await broker.channel(), [envelope])
    handled = await handler.next()

    assert handled == envelope
    assert [e.event_id for e in handler.calls] == [envelope.event_id, envelope.event_id]


def _unknown_type(org: str) -> bytes:
    envelope = canceled(org).model_copy(update={"event_type": "NoSuchEvent"})
    return envelope.model_dump_json().encode()


def _invalid_data(org: str) -> bytes:
    envelope = canceled(org).model_copy(update={"data": {"call_id": "not-a-uuid"}})
    return envelope.model_dump_json().encode()


@pytest.mark.parametrize(
    "body",
    [
        lambda org: b"not json at all",
        lambda org: b'{"event_type": "CallCanceled"}',
        lambda org: b"\xff\xfe",
        _unknown_type,
        _invalid_data,
    ],
    ids=["not-json", "not-an-envelope", "not-utf8", "unknown-type", "invalid-data"],
)
async def test_an_unparseable_message_goes_to_the_dead_letter_queue(
    broker: AbstractRobustConnection, channel: AbstractChannel, body: Callable[[str], bytes]
) -> None:
    name = f"test.unparseable.{uuid.uuid4().hex}"
    queue = await amqp.declare_consumer_queue(channel, name, [])
    handler = Recorder()
    await amqp.consume(queue, handler)
    message_id = uuid.uuid4().hex

    await channel.default_exchange.publish(
        aio_pika.Message(body=body(f"org_{message_id}"), message_id=message_id),
        routing_key=name,
    )
    dead = await find_dead_letter(broker, message_id)

    assert handler.calls == []
    assert dead.headers["x-first-death-queue"] == name
    assert dead.headers["x-first-death-reason"] == "rejected"


async def find_dead_letter(
    broker: AbstractRobustConnection, message_id: str
) -> AbstractIncomingMessage:
    """Take our message from the shared dead-letter queue, leaving everyone else's there."""
    channel = await broker.channel()
    dead_letters = await channel.declare_queue(amqp.DEAD_LETTER_QUEUE, passive=True)
    others: list[AbstractIncomingMessage] = []
    try:
        async with asyncio.timeout(10):
            while True:
                message = await dead_letters.get(fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                elif message.message_id == message_id:
                    await message.ack()
                    return message
                else:
                    others.append(message)
    finally:
        for other in others:
            await other.nack(requeue=True)
        await channel.close()


async def batches_queue(
    broker: AbstractRobustConnection,
) -> tuple[AbstractChannel, str, AbstractQueue]:
    """A fresh consumer queue bound to no event type, on a channel that prefetches 100."""
    channel = await broker.channel()
    await channel.set_qos(prefetch_count=100)
    queue_name = f"test.batches.{uuid.uuid4().hex[:8]}"
    queue = await amqp.declare_consumer_queue(channel, queue_name, [f"Nothing{uuid.uuid4().hex}"])
    return channel, queue_name, queue


async def test_consume_in_batches_hands_over_many_events_at_once_and_acks_them(
    broker: AbstractRobustConnection,
) -> None:
    channel, queue_name, queue = await batches_queue(broker)
    sent = [canceled("org_a") for _ in range(50)]
    batches: list[list[Envelope]] = []
    done = asyncio.Event()

    async def handler(envelopes: list[Envelope]) -> None:
        batches.append(envelopes)
        if sum(map(len, batches)) >= len(sent):
            done.set()

    for envelope in sent:
        await channel.default_exchange.publish(amqp.to_message(envelope), routing_key=queue_name)
    tag = await amqp.consume_in_batches(queue, handler, max_batch=20, max_wait_seconds=0.05)
    await asyncio.wait_for(done.wait(), 10)
    await queue.cancel(tag)
    received = [e.event_id for batch in batches for e in batch]
    assert sorted(received) == sorted(e.event_id for e in sent)
    assert max(map(len, batches)) > 1
    assert max(map(len, batches)) <= 20
    await asyncio.sleep(0.2)
    declared = await channel.declare_queue(queue_name, passive=True)
    assert declared.declaration_result.message_count == 0  # all acked
    await declared.delete(if_unused=False, if_empty=False)


async def test_a_batch_is_settled_with_one_ack_and_an_unparseable_message_among_it_is_not(
    broker: AbstractRobustConnection,
) -> None:
    """One `multiple` ack per batch: every good message is acked (none comes back when the
    channel closes), and the unparseable one among them was rejected on its own, not acked."""
    channel, queue_name, queue = await batches_queue(broker)
    good = [canceled("org_a") for _ in range(30)]
    received: list[Envelope] = []
    done = asyncio.Event()

    async def handler(envelopes: list[Envelope]) -> None:
        received.extend(envelopes)
        if len(received) >= len(good):
            done.set()

    for i, envelope in enumerate(good):
        if i == 10:
            await channel.default_exchange.publish(
                aio_pika.Message(body=b"not an envelope"), routing_key=queue_name
            )
        await channel.default_exchange.publish(amqp.to_message(envelope), routing_key=queue_name)
    tag = await amqp.consume_in_batches(queue, handler, max_batch=8, max_wait_seconds=0.01)
    await asyncio.wait_for(done.wait(), 10)
    await queue.cancel(tag)
    await asyncio.sleep(0.2)
    await channel.close()  # what was not settled would go back to the queue now
    assert sorted(e.event_id for e in received) == sorted(e.event_id for e in good)
    inspect = await broker.channel()
    declared = await inspect.declare_queue(queue_name, passive=True)
    assert declared.declaration_result.message_count == 0
    dead = await inspect.declare_queue(amqp.DEAD_LETTER_QUEUE, passive=True)
    found = []
    while (message := await dead.get(no_ack=True, fail=False)) is not None:
        found.append(message.body)
    assert b"not an envelope" in found
    await declared.delete(if_unused=False, if_empty=False)
    await inspect.close()


async def test_take_waiting_handles_what_is_waiting_in_order_and_acks_it(
    broker: AbstractRobustConnection,
) -> None:
    channel, queue_name, queue = await batches_queue(broker)
    assert await amqp.take_waiting(queue, Batches()) == 0  # an empty queue: nothing, at once
    sent = [canceled("org_a") for _ in range(25)]
    for i, envelope in enumerate(sent):
        if i == 5:
            await channel.default_exchange.publish(
                aio_pika.Message(body=b"not an envelope"), routing_key=queue_name
            )
        await channel.default_exchange.publish(amqp.to_message(envelope), routing_key=queue_name)
    batches = Batches()
    assert await amqp.take_waiting(queue, batches, max_batch=10) == 25
    assert [e.event_id for batch in batches.seen for e in batch] == [e.event_id for e in sent]
    assert [len(batch) for batch in batches.seen] == [10, 10, 5]
    await channel.close()  # what was not acked would go back to the queue now
    inspect = await broker.channel()
    declared = await inspect.declare_queue(queue_name, passive=True)
    assert declared.declaration_result.message_count == 0
    await declared.delete(if_unused=False, if_empty=False)
    await inspect.close()


async def test_take_waiting_raises_when_the_handler_fails_and_leaves_the_batch_queued(
    broker: AbstractRobustConnection,
) -> None:
    channel, queue_name, queue = await batches_queue(broker)
    sent = [canceled("org_a") for _ in range(3)]
    for envelope in sent:
        await channel.default_exchange.publish(amqp.to_message(envelope), routing_key=queue_name)
    with pytest.raises(RuntimeError, match="database restarting"):
        await amqp.take_waiting(queue, Batches(failures=1))
    await channel.close()
    retry = await broker.channel()
    again = await retry.declare_queue(queue_name, passive=True)
    batches = Batches()
    assert await amqp.take_waiting(again, batches) == 3  # all of it, on the next try
    assert [e.event_id for e in batches.seen[0]] == [e.event_id for e in sent]
    await again.delete(if_unused=False, if_empty=False)
    await retry.close()


class Batches:
    """A batch handler that records the batches it was given; fails the first `failures`."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.seen: list[list[Envelope]] = []

    async def __call__(self, envelopes: list[Envelope]) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("database restarting")
        self.seen.append(envelopes)


async def test_consume_in_batches_hands_a_failed_batch_back_for_redelivery(
    broker: AbstractRobustConnection,
) -> None:
    channel, queue_name, queue = await batches_queue(broker)
    envelope = canceled("org_a")
    attempts: list[int] = []
    done = asyncio.Event()

    async def handler(envelopes: list[Envelope]) -> None:
        attempts.append(len(envelopes))
        if len(attempts) == 1:
            raise RuntimeError("database restarting")
        done.set()

    await channel.default_exchange.publish(amqp.to_message(envelope), routing_key=queue_name)
    tag = await amqp.consume_in_batches(queue, handler, max_batch=10, max_wait_seconds=0.01)
    await asyncio.wait_for(done.wait(), 10)
    await queue.cancel(tag)
    assert attempts == [1, 1]
    await queue.delete(if_unused=False, if_empty=False)


async def test_consume_in_batches_carries_on_after_the_connection_drops_mid_batch(
    amqp_factory: Callable[[str], str],
) -> None:
    # found by the chaos suite (RabbitMQ restarted mid-batch): the ack of a batch handled while
    # the connection was down failed, the failed flush left its timer set, and every later
    # message waited in the dialer, unacked, for good
    url = amqp_factory("batch_reconnect")
    vhost = urlsplit(url).path[1:]
    connection = await amqp.connect(url, name="test-batch-reconnect")
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=100)
        queue_name = f"test.reconnect.{uuid.uuid4().hex[:8]}"
        queue = await amqp.declare_consumer_queue(
            channel, queue_name, [f"Nothing{uuid.uuid4().hex}"]
        )
        first, second = canceled("org_a"), canceled("org_a")
        seen: list[uuid.UUID] = []
        in_first_batch, release = asyncio.Event(), asyncio.Event()

        async def handler(envelopes: list[Envelope]) -> None:
            seen.extend(e.event_id for e in envelopes)
            if not in_first_batch.is_set():
                in_first_batch.set()
                await release.wait()  # the connection drops while the batch is handled

        await channel.default_exchange.publish(amqp.to_message(first), routing_key=queue_name)
        await amqp.consume_in_batches(queue, handler, max_batch=10, max_wait_seconds=0.01)
        await asyncio.wait_for(in_first_batch.wait(), 10)
        await asyncio.to_thread(
            subprocess.run,
            ["rabbitmqctl", "-q", "close_all_connections", "-p", vhost, "chaos"],
            check=True,
            capture_output=True,
        )
        for _ in range(100):
            if connection.is_closed:
                break
            await asyncio.sleep(0.05)
        release.set()  # its ack now fails: the channel is gone

        async def handled(event_id: uuid.UUID) -> bool:
            for _ in range(200):
                if event_id in seen:
                    return True
                await asyncio.sleep(0.1)
            return False

        await asyncio.wait_for(connection.connected.wait(), 20)
        await channel.default_exchange.publish(amqp.to_message(second), routing_key=queue_name)
        assert await handled(second.event_id)
        assert seen.count(first.event_id) == 2  # redelivered on the restored channel

        async def settled() -> bool:
            listed = await asyncio.to_thread(
                subprocess.run,
                [
                    "rabbitmqctl",
                    "-q",
                    "-p",
                    vhost,
                    "list_queues",
                    "name",
                    "messages_ready",
                    "messages_unacknowledged",
                    "--no-table-headers",
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            return f"{queue_name}\t0\t0" in listed.stdout

        for _ in range(50):  # the ack follows the handler's return
            if await settled():
                break
            await asyncio.sleep(0.1)
        assert await settled()  # both acked at last, none left ready or unacked
        declared = await channel.declare_queue(queue_name, passive=True)
        await declared.delete(if_unused=False, if_empty=False)
