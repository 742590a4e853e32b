"""How many messages wait in the queues a service knows: sampled by passive declare (which
creates nothing) and exported as `queue_messages_ready{queue}` and `queue_consumers{queue}`.

Each service samples its own consumer queues and the dead-letter queue, so the dead letters
are counted while any consuming service runs (alerts take the max over processes). A quorum
queue updates the count it reports every few seconds: good enough for a gauge.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import aio_pika.exceptions
import aiormq.exceptions
import structlog
from aio_pika.abc import AbstractRobustConnection

from .lifecycle import stop_if_cancelling
from .metrics import QUEUE_CONSUMERS, QUEUE_MESSAGES_READY

log = structlog.get_logger(__name__)

SAMPLE_SECONDS = 15.0


async def sample_once(broker: AbstractRobustConnection, queues: Iterable[str]) -> None:
    """Set the gauges of every queue that exists; a missing queue has no series."""
    for name in queues:
        stop_if_cancelling()
        # a passive declare of a missing queue closes its channel: one channel per queue
        channel = await broker.channel()
        try:
            queue = await channel.declare_queue(name, passive=True, robust=False)
        except aiormq.exceptions.ChannelNotFoundEntity:
            with contextlib.suppress(KeyError):
                QUEUE_MESSAGES_READY.remove(name)
                QUEUE_CONSUMERS.remove(name)
            continue
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        result = queue.declaration_result
        QUEUE_MESSAGES_READY.labels(name).set(result.message_count or 0)
        QUEUE_CONSUMERS.labels(name).set(result.consumer_count or 0)


async def sample_forever(
    broker: AbstractRobustConnection,
    queues: Iterable[str],
    *,
    interval_seconds: float = SAMPLE_SECONDS,
) -> None:
    """Sample now and every `interval_seconds` until cancelled; a broker outage only skips
    samples (the gauges keep their last values, and the broker's own alerts speak)."""
    names = list(queues)
    while True:
        try:
            await sample_once(broker, names)
        except (
            aio_pika.exceptions.AMQPError,
            aio_pika.exceptions.ChannelInvalidStateError,
            ConnectionError,
        ) as exc:
            log.debug("queue_depth_unavailable", error=str(exc))
        except Exception:  # a gauge must never take the service down, nor stop for good
            log.exception("queue_depth_failed")
        stop_if_cancelling()
        await asyncio.sleep(interval_seconds)


def start_sampler(broker: AbstractRobustConnection, queues: Iterable[str]) -> asyncio.Task[None]:
    """The task that keeps the queue-depth gauges of `queues` current (stop it with the
    service's other tasks)."""
    return asyncio.create_task(sample_forever(broker, queues), name="queue-depth")
