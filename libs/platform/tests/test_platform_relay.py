"""The outbox relay, from the real event store to the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from calls_events import CallCanceled, CallRequested, Envelope, call_stream
from calls_platform import amqp, eventstore, topology
from calls_platform.db import Pool, open_pool
from calls_platform.migrate import migrate_event_store
from calls_platform.notify import AppendListener
from calls_platform.relay import CHECKPOINT, OutboxRelay
from calls_platform.service import stop_tasks
from calls_testing import new_org_id
from prometheus_client import REGISTRY

pytestmark = pytest.mark.integration


class Store:
    def __init__(self, url: str, pool: Pool) -> None:
        self.url = url
        self.pool = pool

    async def append(self, events: list[Envelope]) -> list[Envelope]:
        async with self.pool.connection() as conn:
            return await eventstore.append(conn, events)

    async def checkpoint(self) -> int | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT position FROM eventstore.checkpoints WHERE name = %s", (CHECKPOINT,)
            )
            row = await cur.fetchone()
        return None if row is None else int(row["position"])


@pytest.fixture
async def store(database_factory: Callable[[str], str]) -> AsyncIterator[Store]:
    url = database_factory("relay")
    pool = await open_pool(url, name="test-relay")
    async with pool:
        async with pool.connection() as conn:
            await migrate_event_store(conn)
        yield Store(url, pool)


@pytest.fixture
async def spy(broker: AbstractRobustConnection) -> AbstractQueue:
    """A private queue that gets a copy of every event published to the events exchange."""
    channel = await broker.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(await amqp.declare_events_exchange(channel), routing_key="#")
    return queue


@contextlib.asynccontextmanager
async def running_relay(store: Store, broker: AbstractRobustConnection) -> AsyncIterator[None]:
    listener = AppendListener(store.url)
    relay = OutboxRelay(store.pool, broker, listener, batch_size=4, poll_seconds=0.2)
    tasks = [asyncio.create_task(listener.run()), asyncio.create_task(relay.run())]
    try:
        yield
    finally:
        await stop_tasks(tasks)


def events(org: str, calls: int) -> list[Envelope]:
    out: list[Envelope] = []
    for _ in range(calls):
        call_id = uuid.uuid4()
        out.append(
            Envelope.wrap(
                CallRequested(
                    call_id=call_id,
                    to_number="+15551230001",
                    from_number="+15551230002",
                    requested_by="test",
                ),
                stream_id=call_stream(call_id),
                organization_id=org,
                correlation_id=f"corr-{call_id}",
            )
        )
        out.append(
            Envelope.wrap(
                CallCanceled(call_id=call_id, reason="batch canceled"),
                stream_id=call_stream(call_id),
                organization_id=org,
            )
        )
    return out


async def receive_until(
    queue: AbstractQueue, expected: list[Envelope], org: str
) -> list[AbstractIncomingMessage]:
    """This organization's messages, in arrival order, until every expected event arrived."""
    wanted = {str(e.event_id) for e in expected}
    received: list[AbstractIncomingMessage] = []
    # acked one by one: what the iterator fetched beyond the last expected event goes back
    # readers wait for any writing transaction open in the cluster: generous on a shared one
    async with asyncio.timeout(60), queue.iterator() as messages:
        async for message in messages:
            await message.ack()
            if (message.headers or {}).get("organization_id") != org:
                continue
            received.append(message)
            wanted.discard(message.message_id or "")
            if not wanted:
                return received
    raise AssertionError("queue iterator ended")


async def wait_for_checkpoint(store: Store, position: int) -> None:
    """The checkpoint is saved after the broker confirms, so it may trail what was received."""
    async with asyncio.timeout(10):
        while await store.checkpoint() != position:  # noqa: ASYNC110 - polls the database
            await asyncio.sleep(0.02)


async def relay_once(
    store: Store, broker: AbstractRobustConnection, spy: AbstractQueue, new: list[Envelope]
) -> tuple[list[Envelope], list[AbstractIncomingMessage]]:
    """Records `new` (of one organization), then relays until every one of them arrived."""
    recorded = await store.append(new)
    async with running_relay(store, broker):
        return recorded, await receive_until(spy, recorded, new[0].organization_id)


async def test_relay_publishes_each_event_once_and_resumes_from_its_checkpoint(
    store: Store, broker: AbstractRobustConnection, spy: AbstractQueue
) -> None:
    org = new_org_id()
    before = await store.append(events(org, 3))

    async with running_relay(store, broker):
        during = await store.append(events(org, 2))  # relayed live, woken by NOTIFY
        first_run = await receive_until(spy, before + during, org)
        await wait_for_checkpoint(store, during[-1].position or 0)

    after = await store.append(events(org, 2))
    async with running_relay(store, broker):
        second_run = await receive_until(spy, after, org)
        await wait_for_checkpoint(store, after[-1].position or 0)

    # the second relay's messages come after anything the first one sent, so a duplicate or
    # a republished event would have shown up by now
    recorded = before + during + after
    counts = Counter(m.message_id for m in first_run + second_run)
    assert counts == Counter(str(e.event_id) for e in recorded)
    assert set(counts.values()) == {1}
    assert [m.message_id for m in second_run] == [str(e.event_id) for e in after]


async def test_relayed_messages_are_persistent_routed_by_type_and_carry_the_envelope(
    store: Store, broker: AbstractRobustConnection, spy: AbstractQueue
) -> None:
    org = new_org_id()
    recorded, messages = await relay_once(store, broker, spy, events(org, 2))

    assert [m.message_id for m in messages] == [str(e.event_id) for e in recorded]
    for message, envelope in zip(messages, recorded, strict=True):
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.routing_key == envelope.event_type
        assert message.exchange == amqp.EVENTS_EXCHANGE
        assert message.content_type == "application/json"
        assert message.type == envelope.event_type
        assert message.correlation_id == envelope.correlation_id
        assert message.headers == {
            "event_type": envelope.event_type,
            "event_version": envelope.event_version,
            "organization_id": org,
            "position": envelope.position,
        }
        assert Envelope.model_validate_json(message.body) == envelope


async def rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, args
    return out.decode()


async def drop_connection(vhost: str, name: str) -> None:
    """Make the broker close the connection called `name`, as a broker restart would."""
    listing = await rabbitmqctl("list_connections", "-p", vhost, "pid", "client_properties")
    pids = [
        line.split("\t")[0]
        for line in listing.splitlines()
        if f'{{"connection_name","{name}"}}' in line
    ]
    assert len(pids) == 1, listing
    await rabbitmqctl("close_connection", pids[0], "test: broker went away")


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs a local rabbitmqctl")
async def test_relay_keeps_relaying_after_the_broker_drops_its_connection(
    store: Store, amqp_url: str, spy: AbstractQueue
) -> None:
    org = new_org_id()
    name = f"test-relay-{org}"
    vhost = urlsplit(amqp_url).path.removeprefix("/") or "/"
    appended: list[Envelope] = []

    async def keep_appending() -> None:
        """Keeps the relay publishing, so the drop lands while messages are in flight."""
        while True:
            appended.extend(await store.append(events(org, 3)))
            await asyncio.sleep(0.01)

    broker = await amqp.connect(f"{amqp_url}?reconnect_interval=0.5", name=name)
    async with broker, running_relay(store, broker):
        await receive_until(spy, await store.append(events(org, 1)), org)
        feeder = asyncio.create_task(keep_appending())
        try:
            await asyncio.sleep(0.1)
            await drop_connection(vhost, name)
            await asyncio.sleep(0.2)  # still appending while the connection is down
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder

        received = await receive_until(spy, appended, org)
    # at least once: what was in flight when the connection dropped may arrive twice
    assert {m.message_id for m in received} == {str(e.event_id) for e in appended}


# --- routing: the topology declared before the first publish, mandatory publishes -----------


@pytest.fixture
async def own_vhost(amqp_factory: Callable[[str], str]) -> AsyncIterator[AbstractRobustConnection]:
    """A vhost of this test's own (a relay holding an unroutable event there stalls nobody
    else's), fresh for each test."""
    connection = await amqp.connect(amqp_factory(f"relay-routing-{uuid.uuid4().hex[:8]}"))
    async with connection:
        yield connection


@contextlib.asynccontextmanager
async def relay_with(
    store: Store, broker: AbstractRobustConnection, queues: tuple[topology.QueueSpec, ...]
) -> AsyncIterator[OutboxRelay]:
    listener = AppendListener(store.url)
    relay = OutboxRelay(
        store.pool,
        broker,
        listener,
        poll_seconds=0.2,
        queues=queues,
        unroutable_backoff_seconds=(0.1, 0.2),
    )
    tasks = [asyncio.create_task(listener.run()), asyncio.create_task(relay.run())]
    try:
        yield relay
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def depth(broker: AbstractRobustConnection, queue: str) -> int:
    async with broker.channel() as channel:
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


async def test_an_event_appended_before_any_consumer_started_waits_in_its_queue(
    store: Store, own_vhost: AbstractRobustConnection
) -> None:
    """The relay declares the topology before its first publish: no consumer has ever run,
    yet the request is in the consumer's queue when the consumer comes."""
    spec = topology.QueueSpec(f"test.requests-{uuid.uuid4().hex[:8]}", (CallRequested.TYPE,))
    recorded = await store.append(events("org_early", 2))
    requests = [e for e in recorded if e.event_type == CallRequested.TYPE]

    async with relay_with(store, own_vhost, (spec,)):
        await wait_for_checkpoint(store, recorded[-1].position or 0)
    # CallCanceled is bound by no queue of this topology: returned, and passed

    async with own_vhost.channel() as channel:
        queue = await topology.declare_queue(channel, spec)  # the consumer, starting late
        received = await receive_until(queue, requests, "org_early")
    assert [m.message_id for m in received] == [str(e.event_id) for e in requests]


async def test_an_unroutable_event_holds_the_checkpoint_until_its_binding_exists(
    store: Store, own_vhost: AbstractRobustConnection
) -> None:
    spec = topology.QueueSpec(f"test.requests-{uuid.uuid4().hex[:8]}", (CallRequested.TYPE,))
    first = await store.append(events("org_held", 1))
    async with relay_with(store, own_vhost, (spec,)) as relay:
        await wait_for_checkpoint(store, first[-1].position or 0)
        # someone removes the binding (a queue deleted and recreated bare, a broker reset)
        async with own_vhost.channel() as channel:
            queue: AbstractQueue = await channel.declare_queue(spec.name, passive=True)
            await queue.unbind(topology.EVENTS_EXCHANGE, routing_key=CallRequested.TYPE)
        unroutable_before = unroutable_count(CallRequested.TYPE)
        held = await store.append(events("org_held", 1))
        request = held[0]

        async with asyncio.timeout(10):
            while relay.health.held is None:  # noqa: ASYNC110 - polls the relay's state
                await asyncio.sleep(0.02)
        async with asyncio.timeout(10):  # retried: returned again
            while unroutable_count(CallRequested.TYPE) < unroutable_before + 2:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert await store.checkpoint() == first[-1].position  # not past the held event
        assert relay.health.held.position == request.position
        assert relay.health.checks() == {"relay_routing": False}
        assert "unroutable" in relay.health.reasons()["relay_routing"]

        async with own_vhost.channel() as channel:
            queue = await topology.declare_queue(channel, spec)  # the consumer declares it
            await wait_for_checkpoint(store, held[-1].position or 0)
            received = await receive_until(queue, [first[0], request], "org_held")
        assert relay.health.held is None
        assert relay.health.checks() == {"relay_routing": True}
    # nothing dropped: the first request (routed at the time) and the held one
    assert {m.message_id for m in received} == {str(first[0].event_id), str(request.event_id)}


def unroutable_count(event_type: str) -> float:
    value = REGISTRY.get_sample_value("events_unroutable_total", {"event_type": event_type})
    return value or 0.0


async def test_a_relay_that_stops_while_holding_no_longer_says_it_holds(
    store: Store, own_vhost: AbstractRobustConnection
) -> None:
    """Leadership lost while an event is held: this process's /readyz stops reporting it (the
    new leader reports its own)."""
    spec = topology.QueueSpec(f"test.requests-{uuid.uuid4().hex[:8]}", (CallRequested.TYPE,))
    async with relay_with(store, own_vhost, (spec,)) as relay:
        first = await store.append(events("org_stops", 1))
        await wait_for_checkpoint(store, first[-1].position or 0)  # the relay declared it all
        async with own_vhost.channel() as channel:
            queue = await channel.declare_queue(spec.name, passive=True)
            await queue.unbind(topology.EVENTS_EXCHANGE, routing_key=CallRequested.TYPE)
        await store.append(events("org_stops", 1))
        async with asyncio.timeout(10):
            while relay.health.held is None:  # noqa: ASYNC110 - polls the relay's state
                await asyncio.sleep(0.02)
    assert relay.health.held is None
    assert relay.health.checks() == {"relay_routing": True}
