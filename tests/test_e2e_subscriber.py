"""A new internal subscriber, as docs/events.md tells one to subscribe: it binds a queue of its
own to calls.events (every event type), backfills what happened before it existed with a
replay from position 0, then follows live events. After deduplicating by message_id it has
seen every event of its organization exactly as the store holds it, each call's events in
stream_version order."""

from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika
import aiohttp
import psycopg
import pytest
from calls_events import Envelope, event_types
from calls_platform import eventstore, topology
from calls_testing import unique_number
from calls_testing.system import System
from callsctl.replay import replay
from psycopg.rows import dict_row

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def place(http: aiohttp.ClientSession, system: System, org: str) -> str:
    async with http.post(
        f"{system.gateway}/calls",
        json={"to_number": unique_number(), "from_number": "+14155550199"},
        headers=system.auth(org),
    ) as r:
        assert r.status == 202, await r.text()
        return str((await r.json())["call_id"])


async def stored(database_url: str, org: str) -> list[Envelope]:
    conn = await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=dict_row
    )
    async with conn:
        events: list[Envelope] = []
        after = eventstore.START
        while batch := await eventstore.read_all(conn, after=after):
            events.extend(e for e in batch if e.organization_id == org)
            after = batch.checkpoint
        return events


async def settled(http: aiohttp.ClientSession, system: System, org: str, calls: list[str]) -> None:
    deadline = time.monotonic() + 120  # a loaded machine: a call takes seconds to complete
    for call_id in calls:
        while True:
            async with http.get(f"{system.gateway}/calls/{call_id}", headers=system.auth(org)) as r:
                if (await r.json()).get("status") == "completed":
                    break
            assert time.monotonic() < deadline, f"{call_id} did not complete"
            await asyncio.sleep(0.3)


async def test_a_new_subscriber_replays_from_zero_then_follows_and_sees_every_event_as_stored(
    system: System, http: aiohttp.ClientSession
) -> None:
    env = system.services["gateway"].env
    database_url, amqp_url = env["DATABASE_URL"], env["AMQP_URL"]
    org = f"org_subscriber_{uuid.uuid4().hex[:8]}"
    before = [await place(http, system, org) for _ in range(2)]
    await settled(http, system, org, before)  # all of it happened before the subscriber

    spec = topology.QueueSpec(
        f"test.subscriber-{uuid.uuid4().hex[:8]}", tuple(sorted(event_types())), owner="test"
    )
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await topology.declare_queue(channel, spec)  # bound first: nothing falls between
        try:
            result = await replay(database_url, amqp_url, spec.name, queues=(spec,))
            assert result.first_position == 1
            live = [await place(http, system, org) for _ in range(2)]
            await settled(http, system, org, live)
            expected = await stored(database_url, org)

            seen: dict[str, Envelope] = {}
            deliveries = 0
            async with asyncio.timeout(60), queue.iterator() as messages:
                async for message in messages:
                    await message.ack()
                    envelope = Envelope.model_validate_json(message.body)
                    if envelope.organization_id != org:
                        continue
                    deliveries += 1
                    assert message.message_id == str(envelope.event_id)
                    seen.setdefault(str(envelope.event_id), envelope)  # dedupe by message_id
                    if {str(e.event_id) for e in expected} <= set(seen):
                        break
        finally:
            await queue.delete(if_unused=False, if_empty=False)

    # everything stored was seen, and nothing that is not stored (a late event of these calls,
    # appended after `expected` was read, is in the store by now)
    now_stored = {str(e.event_id): e for e in await stored(database_url, org)}
    assert {str(e.event_id) for e in expected} <= set(seen) <= set(now_stored)
    for event_id, envelope in seen.items():
        assert envelope == now_stored[event_id]  # exactly as stored
    assert deliveries >= len(expected)
    # per call stream, in stream_version order (the order they arrived in, after dedupe)
    by_stream: dict[str, list[int]] = {}
    for envelope in seen.values():
        by_stream.setdefault(envelope.stream_id, []).append(envelope.stream_version or 0)
    for stream, versions in by_stream.items():
        assert versions == sorted(versions), stream
    assert len(by_stream) == len(before) + len(live)
