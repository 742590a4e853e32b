"""The event store's contract, against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from calls_events import CallInitiated, CallRequested, Envelope, call_stream
from calls_platform import eventstore
from calls_platform.db import Pool, open_pool
from calls_platform.migrate import migrate_event_store

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_factory) -> AsyncIterator[Pool]:  # type: ignore[no-untyped-def]
    pool = await open_pool(database_factory("eventstore"), name="test", max_size=20)
    await pool.wait()
    async with pool.connection() as conn:
        await migrate_event_store(conn)
    yield pool
    await pool.close()


def requested(call_id: uuid.UUID, org: str = "org_a") -> Envelope:
    return Envelope.wrap(
        CallRequested(
            call_id=call_id, to_number="+15551230001", from_number="+15551230002", requested_by="t"
        ),
        stream_id=call_stream(call_id),
        organization_id=org,
    )


async def test_append_assigns_positions_and_stream_versions(pool: Pool) -> None:
    call_id = uuid.uuid4()
    initiated = Envelope.wrap(
        CallInitiated(call_id=call_id, call_sid="CA" + "0" * 32),
        stream_id=call_stream(call_id),
        organization_id="org_a",
    )
    async with pool.connection() as conn:
        recorded = await eventstore.append(conn, [requested(call_id), initiated])
        stream = await eventstore.read_stream(conn, call_stream(call_id))
    assert [e.stream_version for e in recorded] == [1, 2]
    assert recorded[1].position == recorded[0].position + 1  # type: ignore[operator]
    assert [e.event_id for e in stream] == [e.event_id for e in recorded]
    assert isinstance(stream[1].event(), CallInitiated)


async def test_expected_version_mismatch_appends_nothing(pool: Pool) -> None:
    call_id = uuid.uuid4()
    async with pool.connection() as conn:
        await eventstore.append(conn, [requested(call_id)])
        head = await eventstore.head_position(conn)
        with pytest.raises(eventstore.ConcurrencyError):
            await eventstore.append(
                conn,
                [requested(call_id)],
                expected_versions={call_stream(call_id): eventstore.NO_STREAM},
            )
        assert await eventstore.head_position(conn) == head


async def test_same_event_id_is_stored_once(pool: Pool) -> None:
    envelope = requested(uuid.uuid4())
    async with pool.connection() as conn:
        first = await eventstore.append(conn, [envelope])
        second = await eventstore.append(conn, [envelope])
        stream = await eventstore.read_stream(conn, envelope.stream_id)
    assert len(first) == 1
    assert second == []
    assert len(stream) == 1


async def test_concurrent_appends_commit_in_position_order_without_gaps(pool: Pool) -> None:
    """A reader that has seen position N never later finds a committed event below N."""
    async with pool.connection() as conn:
        start = await eventstore.head_position(conn)
    seen: list[int] = []
    done = asyncio.Event()

    async def tail() -> None:
        after = start
        while not done.is_set() or after < start + 200:
            async with pool.connection() as conn:
                batch = await eventstore.read_all(conn, after=after, limit=50)
            for e in batch:
                assert e.position is not None
                seen.append(e.position)
                after = e.position
            await asyncio.sleep(0)

    async def writer(n: int) -> None:
        for _ in range(n):
            async with pool.connection() as conn:
                await eventstore.append(conn, [requested(uuid.uuid4())])

    reader = asyncio.create_task(tail())
    await asyncio.gather(*(writer(20) for _ in range(10)))
    done.set()
    await asyncio.wait_for(reader, 10)
    assert seen == list(range(start + 1, start + 201))


async def test_large_append_uses_one_transaction(pool: Pool) -> None:
    events = [requested(uuid.uuid4()) for _ in range(2000)]
    async with pool.connection() as conn:
        before = await eventstore.head_position(conn)
        recorded = await eventstore.append(conn, events)
        after = await eventstore.head_position(conn)
    assert after - before == 2000
    assert [e.position for e in recorded] == list(range(before + 1, after + 1))
