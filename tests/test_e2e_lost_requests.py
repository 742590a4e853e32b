"""Requests whose messages were lost, through real processes on a system of each test's own:
the dialer is stopped, calls are accepted and relayed into dialer.requests, and the queue is
deleted with them (an operator's mistake, a broker reset). When the dialer comes back it
declares its queue again, empty.

- With the intake watchdog out of reach, `callsctl replay` refills the queue from the event
  store and every call is dialed, once.
- With no replay, the dialer's intake watchdog alone takes the requests in from the store once
  they are older than its grace, counted in dials_taken_in_by_watchdog_total.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aio_pika
import aiohttp
import pytest
from calls_platform import topology
from calls_testing.metrics import metric
from calls_testing.plugin import AmqpFactory, DatabaseFactory
from callsctl.replay import replay

from tests.chaos.harness import (
    ChaosSystem,
    chaos_system,
    dials_by_call,
    post_calls,
    private_databases,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def databases(database_factory: DatabaseFactory) -> Iterator[Callable[[str], str]]:
    with private_databases(database_factory) as create:
        yield create


CALLS = 4


async def depth(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection, connection.channel() as channel:
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


async def delete_queue(amqp_url: str, queue: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection, connection.channel() as channel:
        await channel.queue_delete(queue)


async def lost_requests(http: aiohttp.ClientSession, chaos: ChaosSystem, org: str) -> list[str]:
    """Calls accepted while the dialer is down, whose messages are then deleted with the
    dialer's queue; returns their ids."""
    for name in ("simulator", "gateway", "dialer"):
        await chaos.restart(name)
    chaos.stop("dialer")
    accepted = await post_calls(http, chaos, org, CALLS)
    amqp_url = chaos.env["AMQP_URL"]
    deadline = time.monotonic() + 15  # relayed into the queue (a quorum queue's depth lags)
    while await depth(amqp_url, topology.DIALER_REQUESTS) < CALLS:
        assert time.monotonic() < deadline, "the requests never reached dialer.requests"
        await asyncio.sleep(0.5)
    await delete_queue(amqp_url, topology.DIALER_REQUESTS)
    await chaos.restart("dialer")  # declares its queue again: empty
    return accepted


async def dialed(http: aiohttp.ClientSession, chaos: ChaosSystem, seconds: float) -> Counter[Any]:
    return await dials_by_call(http, chaos, CALLS, seconds)


@contextlib.asynccontextmanager
async def requests_lost(
    databases: Callable[[str], str], amqp_factory: AmqpFactory, case: str, grace: str
) -> AsyncIterator[tuple[ChaosSystem, aiohttp.ClientSession, list[str]]]:
    """A system of the test's own (lost-requests-`case`), none of it started, with that intake
    grace, in which the requests of organization org_lost_`case` are then lost
    (`lost_requests`): the system, a client session and the ids of the lost calls; closed
    after."""
    name = f"lost-requests-{case}"
    label = f"{name}_{uuid.uuid4().hex[:6]}"
    chaos = await chaos_system(
        databases(label),
        amqp_factory(label),
        name,
        started=False,
        extra_env={"DIALER_INTAKE_GRACE_SECONDS": grace},
    )
    try:
        async with aiohttp.ClientSession() as http:
            yield chaos, http, await lost_requests(http, chaos, f"org_lost_{case}")
    finally:
        chaos.close()


async def test_a_deleted_and_recreated_queue_loses_nothing_once_replay_is_run(
    databases: Callable[[str], str], amqp_factory: AmqpFactory
) -> None:
    async with requests_lost(databases, amqp_factory, "replay", "3600") as (chaos, http, accepted):
        assert await dialed(http, chaos, 3) == Counter()  # lost: nothing comes

        result = await replay(chaos.database_url, chaos.env["AMQP_URL"], topology.DIALER_REQUESTS)
        assert result.published >= CALLS
        assert await dialed(http, chaos, 60) == Counter(accepted)  # each exactly once
        # replaying again changes nothing: the dialer deduplicates by call
        await replay(chaos.database_url, chaos.env["AMQP_URL"], topology.DIALER_REQUESTS)
        assert await dialed(http, chaos, 0) == Counter(accepted)
        assert (
            await metric(http, chaos.service("dialer").url, "dials_taken_in_by_watchdog_total")
            == 0.0
        )


async def test_the_intake_watchdog_alone_takes_in_requests_that_never_arrived(
    databases: Callable[[str], str], amqp_factory: AmqpFactory
) -> None:
    async with requests_lost(databases, amqp_factory, "watchdog", "2") as (chaos, http, accepted):
        assert await dialed(http, chaos, 60) == Counter(accepted)  # each exactly once
        taken = await metric(http, chaos.service("dialer").url, "dials_taken_in_by_watchdog_total")
        assert taken == CALLS
