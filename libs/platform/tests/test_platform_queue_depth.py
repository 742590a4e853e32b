"""Queue depths by passive declare: the gauges show what waits in each existing queue, and a
queue that does not exist has no series (and is not created). Against the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import aio_pika
import aiormq.exceptions
import pytest
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection
from calls_platform import queue_depth
from calls_platform.service import stop_if_cancelling
from prometheus_client import REGISTRY

pytestmark = pytest.mark.integration


def ready(queue: str) -> float | None:
    return REGISTRY.get_sample_value("queue_messages_ready", {"queue": queue})


def consumers(queue: str) -> float | None:
    return REGISTRY.get_sample_value("queue_consumers", {"queue": queue})


async def fresh_queue(
    broker: AbstractRobustConnection, prefix: str
) -> tuple[str, AbstractChannel, AbstractQueue]:
    """A new auto-delete queue named after `prefix`, on a channel with publisher confirms."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    channel = await broker.channel(publisher_confirms=True)
    queue = await channel.declare_queue(name, auto_delete=True)
    return name, channel, queue


async def test_ready_messages_and_consumers_of_existing_queues(
    broker: AbstractRobustConnection,
) -> None:
    name, channel, queue = await fresh_queue(broker, "depth")
    for i in range(3):
        await channel.default_exchange.publish(aio_pika.Message(str(i).encode()), routing_key=name)
    try:
        await queue_depth.sample_once(broker, [name])
        assert ready(name) == 3
        assert consumers(name) == 0
    finally:
        await queue.delete(if_unused=False, if_empty=False)
        await channel.close()


async def test_a_missing_queue_has_no_series_and_is_not_created(
    broker: AbstractRobustConnection,
) -> None:
    name, channel, queue = await fresh_queue(broker, "depth-gone")
    await queue_depth.sample_once(broker, [name])
    assert ready(name) == 0
    await queue.delete(if_unused=False, if_empty=False)
    await channel.close()

    await queue_depth.sample_once(broker, [name])
    assert ready(name) is None
    assert consumers(name) is None
    check = await broker.channel()
    with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
        await check.declare_queue(name, passive=True, robust=False)


async def test_the_sampler_keeps_sampling_until_stopped(
    broker: AbstractRobustConnection,
) -> None:
    name, channel, queue = await fresh_queue(broker, "depth-live")
    task = asyncio.create_task(queue_depth.sample_forever(broker, [name], interval_seconds=0.05))
    try:
        await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key=name)
        for _ in range(100):
            if ready(name) == 1:
                break
            await asyncio.sleep(0.05)
        assert ready(name) == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await queue.delete(if_unused=False, if_empty=False)
        await channel.close()


async def test_a_sampler_whose_cancellation_a_library_lost_still_stops() -> None:
    """asyncio.wait_for on Python 3.11 can return normally when cancelled at its wakeup; the
    loop must still stop, or the service's shutdown waits for it forever."""

    async def loses_its_cancellation() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)  # as a library that swallowed it
        stop_if_cancelling()
        await asyncio.sleep(3600)  # never reached

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.create_task(loses_its_cancellation()), 5)
