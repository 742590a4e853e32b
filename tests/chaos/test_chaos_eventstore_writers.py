"""Scenario: 32 concurrent writers across many streams (no append lock any more) while the
outbox relay and the call-log projector, both running as processes of their own, are killed
(-9) and restarted again and again. No event is lost by the relay (a spy queue bound to every
event type receives every stored event), none takes effect twice (the read model equals a
rebuild), and every call ends once, dialed at most once."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid

import aio_pika
import aiohttp
import pytest
from calls_platform import amqp

from tests.chaos.harness import ChaosSystem, MakeSystem, Workload, _fetch, verify

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(400)]

WRITERS = 32
AT_LEAST = 256  # calls in all
KILLS = 2  # of each process, at least, while the writers write
WRITER_PAUSE = 2.5  # seconds between a writer's calls: ~13 calls/s in all, under DIALER_CPS


async def writer(
    http: aiohttp.ClientSession, chaos: ChaosSystem, workload: Workload, done: asyncio.Event
) -> None:
    while not done.is_set():
        await workload.single(http, chaos, record=False)
        await asyncio.sleep(WRITER_PAUSE * random.uniform(0.5, 1.5))


async def kill_and_restart(chaos: ChaosSystem, name: str, every: float, kills: list[int]) -> None:
    """kill -9 `name` every `every` seconds or so, restart it, count it in `kills`."""
    while True:
        await asyncio.sleep(every * random.uniform(0.6, 1.4))
        chaos.kill(name)
        kills.append(1)
        await asyncio.sleep(0.3)
        await chaos.restart(name)


async def test_concurrent_writers_while_relay_and_projector_are_killed(
    make_system: MakeSystem,
) -> None:
    chaos = await make_system(
        "eventstore-writers",
        relay_process=True,
        extra_env={"RATE_LIMIT_ORG_PER_SECOND": "0", "RATE_LIMIT_KEY_PER_SECOND": "0"},
    )
    workload = Workload(org="org_chaos_writers")
    published: list[str] = []
    broker = await amqp.connect(chaos.env["AMQP_URL"], name="chaos-spy")
    async with broker, aiohttp.ClientSession() as http:
        channel = await broker.channel()
        exchange = await amqp.declare_events_exchange(channel)
        spy = await channel.declare_queue(f"chaos.spy.{uuid.uuid4().hex[:8]}", exclusive=True)
        await spy.bind(exchange, routing_key="#")

        async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            published.append(str(message.message_id))

        tag = await spy.consume(take, no_ack=True)
        relay_kills: list[int] = []
        projector_kills: list[int] = []
        killers = [
            asyncio.create_task(kill_and_restart(chaos, "relay", 2.0, relay_kills)),
            asyncio.create_task(kill_and_restart(chaos, "call-log", 3.0, projector_kills)),
        ]
        done = asyncio.Event()
        writers = [asyncio.create_task(writer(http, chaos, workload, done)) for _ in range(WRITERS)]
        while not (  # noqa: ASYNC110 - three conditions, two of them counters
            len(relay_kills) >= KILLS
            and len(projector_kills) >= KILLS
            and workload.expected_calls >= AT_LEAST
        ):
            await asyncio.sleep(0.2)
        done.set()
        await asyncio.gather(*writers)
        for killer in killers:  # lets a restart under way finish first
            killer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await killer
        for name in ("relay", "call-log"):
            process = chaos.service(name).process
            if process is None or process.poll() is not None:
                await chaos.restart(name)
        await chaos.ready("relay")
        await chaos.ready("call-log")
        kills = (len(relay_kills), len(projector_kills))

        report = await verify(http, chaos, workload, settle_seconds=180)

        stored = await _fetch(chaos.database_url, "SELECT event_id FROM eventstore.events")
        await spy.cancel(tag)
        with contextlib.suppress(Exception):
            await spy.delete(if_unused=False, if_empty=False)

    stored_ids = {str(row["event_id"]) for row in stored}
    assert len(stored_ids) == len(stored)  # each event once in the store
    assert set(published) == stored_ids, (  # the relay lost none (republishing is allowed)
        len(stored_ids - set(published)),
        len(set(published) - stored_ids),
    )
    assert workload.expected_calls >= AT_LEAST
    print(
        f"\neventstore-writers: {workload.expected_calls} calls by {WRITERS} writers,"
        f" {len(stored_ids)} events, {len(published)} published"
        f" ({len(published) - len(stored_ids)} again after a kill), kills relay/projector"
        f" {kills}, {len(report.dials)} dials, settled {report.settle_seconds:.1f}s"
    )
