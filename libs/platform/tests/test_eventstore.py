"""The event store's contract, against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from calls_events import CallCanceled, CallInitiated, CallRequested, Envelope, call_stream
from calls_platform import eventstore
from calls_platform.db import Pool, open_pool
from calls_platform.migrate import migrate_event_store
from calls_testing.plugin import DatabaseFactory

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_factory: DatabaseFactory) -> AsyncIterator[Pool]:
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


def canceled(call_id: uuid.UUID, org: str = "org_a") -> Envelope:
    return Envelope.wrap(
        CallCanceled(call_id=call_id, reason="batch canceled"),
        stream_id=call_stream(call_id),
        organization_id=org,
    )


async def test_read_all_returns_only_the_requested_types_in_position_order(pool: Pool) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    async with pool.connection() as conn:
        start = await eventstore.head_position(conn)
        recorded = await eventstore.append(
            conn, [requested(first), canceled(first), requested(second), canceled(second)]
        )
        only_canceled = await eventstore.read_all(conn, after=start, types={"CallCanceled"})
        both = await eventstore.read_all(conn, after=start, types=["CallCanceled", "CallRequested"])
        none = await eventstore.read_all(conn, after=start, types=["CallFailed"])

    assert [e.event_id for e in only_canceled] == [recorded[1].event_id, recorded[3].event_id]
    assert [e.event_id for e in both] == [e.event_id for e in recorded]
    assert none == []


async def test_read_all_pages_with_after_and_limit(pool: Pool) -> None:
    async with pool.connection() as conn:
        start = await eventstore.head_position(conn)
        recorded = await eventstore.append(conn, [requested(uuid.uuid4()) for _ in range(5)])
        page = await eventstore.read_all(conn, after=start + 1, limit=2)

    assert [e.event_id for e in page] == [e.event_id for e in recorded[1:3]]


async def test_read_stream_returns_the_stream_in_version_order(pool: Pool) -> None:
    call_id = uuid.uuid4()
    stream = call_stream(call_id)
    async with pool.connection() as conn:
        await eventstore.append(conn, [requested(call_id)])
        await eventstore.append(conn, [requested(uuid.uuid4())])  # another stream in between
        await eventstore.append(
            conn,
            [
                Envelope.wrap(
                    CallInitiated(call_id=call_id, call_sid="CA" + "1" * 32),
                    stream_id=stream,
                    organization_id="org_a",
                )
            ],
        )
        await eventstore.append(conn, [canceled(call_id)])
        events = await eventstore.read_stream(conn, stream)

    assert [e.stream_version for e in events] == [1, 2, 3]
    assert [e.event_type for e in events] == ["CallRequested", "CallInitiated", "CallCanceled"]
    assert {e.stream_id for e in events} == {stream}


async def test_read_stream_of_unknown_stream_is_empty(pool: Pool) -> None:
    async with pool.connection() as conn:
        assert await eventstore.read_stream(conn, call_stream(uuid.uuid4())) == []


async def test_recorded_envelope_reads_back_unchanged(pool: Pool) -> None:
    call_id = uuid.uuid4()
    envelope = requested(call_id).model_copy(
        update={"correlation_id": "corr-1", "causation_id": "cause-1"}
    )
    async with pool.connection() as conn:
        [recorded] = await eventstore.append(conn, [envelope])
        [read] = await eventstore.read_stream(conn, call_stream(call_id))

    assert read == recorded
    assert read.event() == envelope.event()


async def test_events_cannot_be_changed_or_removed(pool: Pool) -> None:
    async with pool.connection() as conn:
        [recorded] = await eventstore.append(conn, [requested(uuid.uuid4())])
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            await conn.execute(
                "UPDATE eventstore.events SET organization_id = 'x' WHERE event_id = %s",
                (recorded.event_id,),
            )
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            await conn.execute(
                "DELETE FROM eventstore.events WHERE event_id = %s", (recorded.event_id,)
            )


def test_deterministic_event_id_is_stable_for_the_same_parts() -> None:
    parts = ("CallStatusReported", "CA" + "2" * 32, "ringing", "3")

    assert eventstore.deterministic_event_id(*parts) == eventstore.deterministic_event_id(*parts)
    # a fixed value: ids already stored must keep matching after any refactoring
    assert eventstore.deterministic_event_id("a", "b") == uuid.UUID(
        "77f3abca-a5e1-5f9e-b40e-5c7c54b890ea"
    )


def test_deterministic_event_id_differs_when_any_part_differs() -> None:
    ids = {
        eventstore.deterministic_event_id("report", "CA1", "ringing"),
        eventstore.deterministic_event_id("report", "CA1", "completed"),
        eventstore.deterministic_event_id("report", "CA2", "ringing"),
    }

    assert len(ids) == 3
