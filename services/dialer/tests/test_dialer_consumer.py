"""The dialer's RabbitMQ consumer: requests delivered (and redelivered) through a real broker
reach the dials table once."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from calls_events import Envelope
from calls_platform import amqp, topology
from calls_platform.db import Pool
from calls_testing.waiting import Wait
from dialer import dial_queue
from dialer.consumer import Handlers

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Calls

pytestmark = pytest.mark.integration


async def test_a_redelivered_call_request_is_enqueued_once(
    amqp_url: str, pool: Pool, calls: Calls, wait: Wait
) -> None:
    envelope, event = await calls.requested("org_a")
    connection = await amqp.connect(amqp_url)
    try:
        channel = await connection.channel()
        # a queue of this test's own: the real one may be in use by other tests' dialers
        bindings = topology.queue(topology.DIALER_REQUESTS).bindings
        queue = await amqp.declare_consumer_queue(
            channel, f"dialer.requests.test-{uuid.uuid4().hex[:8]}", bindings
        )
        handlers, handled = Handlers(pool), []

        async def handle(delivered: Envelope) -> None:
            await handlers(delivered)
            handled.append(delivered.event_id)

        tag = await amqp.consume(queue, handle)
        for _ in range(2):
            # straight to the queue (not through calls.events, which other dialers consume)
            await channel.default_exchange.publish(
                amqp.to_message(envelope), routing_key=queue.name
            )

        async def both_handled() -> bool:
            return handled == [envelope.event_id] * 2

        await wait(both_handled, what="both deliveries handled")
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()

    assert await calls.state(event.call_id) == "pending"
    async with pool.connection() as conn:
        assert await dial_queue.pending_count(conn) == 1
