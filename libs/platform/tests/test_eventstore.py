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
from calls_testing import plans
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


async def test_concurrent_appends_are_each_read_once_in_commit_order(pool: Pool) -> None:
    """32 writers without any append lock, one tailing reader: every event read exactly once,
    each stream's events in stream_version order."""
    async with pool.connection() as conn:
        start = await eventstore.head(conn)
    appended: list[Envelope] = []
    seen: list[Envelope] = []
    done = asyncio.Event()

    async def tail() -> None:
        after = start
        while not done.is_set() or len(seen) < len(appended):
            async with pool.connection() as conn:
                batch = await eventstore.read_all(conn, after=after, limit=50)
            seen.extend(batch)
            after = batch.checkpoint
            await asyncio.sleep(0.001)

    async def writer(stream_ids: list[uuid.UUID]) -> None:
        for call_id in stream_ids * 3:  # three events per stream, interleaved with others
            async with pool.connection() as conn:
                appended.extend(await eventstore.append(conn, [canceled(call_id)]))

    reader = asyncio.create_task(tail())
    await asyncio.gather(*(writer([uuid.uuid4() for _ in range(3)]) for _ in range(16)))
    done.set()
    await asyncio.wait_for(reader, 20)
    assert sorted(e.event_id for e in seen) == sorted(e.event_id for e in appended)
    assert len(seen) == len(appended) == 16 * 9
    versions: dict[str, list[int]] = {}
    for e in seen:
        versions.setdefault(e.stream_id, []).append(e.stream_version or 0)
    assert all(v == [1, 2, 3] for v in versions.values())


async def test_an_event_committed_later_with_a_smaller_position_is_not_skipped(
    pool: Pool,
) -> None:
    """The pitfall of a checkpoint on the position alone (Emmett PR #336): the first writer
    takes position p1, the second p2 > p1 and commits first. A reader that took p2 and saved
    "p2" would never read p1; read in (transaction_id, position) order, below the oldest
    running transaction, it reads neither until the first commits, then both."""
    async with pool.connection() as reader, pool.connection() as first, pool.connection() as second:
        start = await eventstore.head(reader)
        async with first.transaction():
            [early] = await eventstore.append(first, [requested(uuid.uuid4())])
            [late] = await eventstore.append(second, [requested(uuid.uuid4())])  # commits
            assert (early.position or 0) < (late.position or 0)
            assert await eventstore.read_all(reader, after=start) == []  # held back
        assert await eventstore.wait_readable(reader)
        batch = await eventstore.read_all(reader, after=start)
        assert [e.event_id for e in batch] == [early.event_id, late.event_id]
        assert await eventstore.read_all(reader, after=batch.checkpoint) == []


async def test_checkpoints_of_migrated_positions_are_transaction_zero(pool: Pool) -> None:
    """A bare position n means (0, n): every event appended now comes after it."""
    async with pool.connection() as conn:
        recorded = await eventstore.append(conn, [requested(uuid.uuid4())])
        assert await eventstore.wait_readable(conn)
        batch = await eventstore.read_all(conn, after=10**9)
    assert recorded[0].event_id in {e.event_id for e in batch}


async def test_an_open_writing_transaction_holds_readers_back_and_shows_as_lag(
    pool: Pool,
) -> None:
    async with pool.connection() as reader, pool.connection() as idle:
        start = await eventstore.head(reader)
        async with idle.transaction():
            await idle.execute("SELECT pg_current_xact_id()")  # a writer that went quiet
            [event] = await eventstore.append(reader, [requested(uuid.uuid4())])
            await asyncio.sleep(0.2)
            assert await eventstore.read_all(reader, after=start) == []
            lag = await eventstore.lag(reader, start)
            assert lag.events >= 1
            assert lag.seconds >= 0.2
            assert await eventstore.oldest_transaction_age(reader) >= 0.2
        assert await eventstore.wait_readable(reader)
        assert [e.event_id for e in await eventstore.read_all(reader, after=start)] == [
            event.event_id
        ]
        caught_up = (await eventstore.read_all(reader, after=start)).checkpoint
        assert await eventstore.lag(reader, caught_up) == (0, 0.0)


async def test_stream_order_holds_when_a_transaction_took_its_id_before_reading_its_stream(
    pool: Pool,
) -> None:
    """The dialer updates its own table, then appends to the call's stream. If a callback's
    append to that stream commits in between, the dialer's transaction id is the smaller one,
    yet its event is the stream's next version: it is recorded with the callback's
    transaction id, so the readers' order keeps the stream's order."""
    call_id = uuid.uuid4()
    stream = call_stream(call_id)
    async with pool.connection() as reader, pool.connection() as dialer, pool.connection() as gw:
        start = await eventstore.head(reader)
        await eventstore.append(gw, [requested(call_id)])
        async with dialer.transaction():
            cur = await dialer.execute("SELECT pg_current_xact_id()::text AS xid")  # own write
            dialer_xid = int((await cur.fetchone() or {})["xid"])
            [callback] = await eventstore.append(gw, [canceled(call_id)])  # commits: v2
            initiated = Envelope.wrap(
                CallInitiated(call_id=call_id, call_sid="CA" + "3" * 32),
                stream_id=stream,
                organization_id="org_a",
            )
            [late] = await eventstore.append(dialer, [initiated])  # v3
        assert (callback.stream_version, late.stream_version) == (2, 3)
        cur = await reader.execute(
            "SELECT transaction_id::text AS tx FROM eventstore.events WHERE event_id = %s",
            (callback.event_id,),
        )
        assert int((await cur.fetchone() or {})["tx"]) > dialer_xid  # the interleaving
        assert await eventstore.wait_readable(reader)
        read = [e for e in await eventstore.read_all(reader, after=start) if e.stream_id == stream]
    assert [e.stream_version for e in read] == [1, 2, 3]


async def test_racing_appends_to_one_stream_both_land_in_order(pool: Pool) -> None:
    """Without a lock, two appends race for version 2: the second waits on the unique
    (stream_id, stream_version) index, loses, re-reads the stream and takes version 3."""
    call_id = uuid.uuid4()
    async with pool.connection() as a, pool.connection() as b:
        await eventstore.append(a, [requested(call_id)])
        async with a.transaction():
            [first] = await eventstore.append(a, [canceled(call_id)])
            racing = asyncio.create_task(eventstore.append(b, [canceled(call_id)]))
            await asyncio.sleep(0.3)
            assert not racing.done()  # waiting on a's uncommitted version 2
        [second] = await racing
        stream = await eventstore.read_stream(a, call_stream(call_id))
    assert (first.stream_version, second.stream_version) == (2, 3)
    assert [e.stream_version for e in stream] == [1, 2, 3]


async def test_a_racing_append_that_expected_the_old_version_fails(pool: Pool) -> None:
    call_id = uuid.uuid4()
    stream = call_stream(call_id)
    async with pool.connection() as a, pool.connection() as b:
        await eventstore.append(a, [requested(call_id)])
        async with a.transaction():
            await eventstore.append(a, [canceled(call_id)], expected_versions={stream: 1})
            racing = asyncio.create_task(
                eventstore.append(b, [canceled(call_id)], expected_versions={stream: 1})
            )
            await asyncio.sleep(0.3)
        with pytest.raises(eventstore.ConcurrencyError) as failed:
            await racing
        assert (failed.value.expected, failed.value.actual) == (1, 2)
        assert len(await eventstore.read_stream(a, stream)) == 2


async def test_a_failed_append_leaves_the_callers_transaction_usable(pool: Pool) -> None:
    call_id = uuid.uuid4()
    stream = call_stream(call_id)
    async with pool.connection() as conn:
        await eventstore.append(conn, [requested(call_id)])
        async with conn.transaction():
            with pytest.raises(eventstore.ConcurrencyError):
                await eventstore.append(
                    conn, [canceled(call_id)], expected_versions={stream: eventstore.NO_STREAM}
                )
            await eventstore.append(conn, [canceled(call_id)], expected_versions={stream: 1})
        assert [e.stream_version for e in await eventstore.read_stream(conn, stream)] == [1, 2]


async def test_large_append_uses_one_transaction(pool: Pool) -> None:
    events = [requested(uuid.uuid4()) for _ in range(2000)]
    async with pool.connection() as conn:
        start = await eventstore.head(conn)
        recorded = await eventstore.append(conn, events)
        assert await eventstore.wait_readable(conn)
        read = await eventstore.read_all(conn, after=start, limit=5000)
    assert [e.event_id for e in recorded] == [e.event_id for e in events]
    positions = [e.position or 0 for e in recorded]
    assert positions == sorted(positions)
    assert {e.event_id for e in read} == {e.event_id for e in events}


def canceled(call_id: uuid.UUID, org: str = "org_a") -> Envelope:
    return Envelope.wrap(
        CallCanceled(call_id=call_id, reason="batch canceled"),
        stream_id=call_stream(call_id),
        organization_id=org,
    )


async def test_read_all_returns_only_the_requested_types_in_commit_order(pool: Pool) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    async with pool.connection() as conn:
        start = await eventstore.head(conn)
        recorded = await eventstore.append(
            conn, [requested(first), canceled(first), requested(second), canceled(second)]
        )
        assert await eventstore.wait_readable(conn)
        only_canceled = await eventstore.read_all(conn, after=start, types={"CallCanceled"})
        both = await eventstore.read_all(conn, after=start, types=["CallCanceled", "CallRequested"])
        none = await eventstore.read_all(conn, after=start, types=["CallFailed"])

    assert [e.event_id for e in only_canceled] == [recorded[1].event_id, recorded[3].event_id]
    assert [e.event_id for e in both] == [e.event_id for e in recorded]
    assert none == []


async def test_read_all_of_whole_transactions_passes_the_limit_to_the_end_of_the_last(
    pool: Pool,
) -> None:
    async with pool.connection() as conn:
        start = await eventstore.head(conn)
        together = await eventstore.append(conn, [requested(uuid.uuid4()) for _ in range(5)])
        [alone] = await eventstore.append(conn, [requested(uuid.uuid4())])
        assert await eventstore.wait_readable(conn)

        cut = await eventstore.read_all(conn, after=start, limit=2)
        whole = await eventstore.read_all(conn, after=start, limit=2, whole_transactions=True)
        rest = await eventstore.read_all(conn, after=whole.checkpoint, whole_transactions=True)

    assert [e.event_id for e in cut] == [e.event_id for e in together[:2]]
    assert [e.event_id for e in whole] == [e.event_id for e in together]
    assert whole.checkpoints[-1] == whole.checkpoint
    assert [e.event_id for e in rest] == [alone.event_id]


async def test_events_from_before_transaction_ids_count_one_by_one(pool: Pool) -> None:
    """Migrated rows all have transaction_id 0: read as one transaction they would be the
    whole old store in one read."""
    async with pool.connection() as conn:
        old = await eventstore.append(conn, [requested(uuid.uuid4()) for _ in range(3)])
        # as migration 0002 left them (the append-only trigger forbids this to anyone else)
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                "UPDATE eventstore.events SET transaction_id = '0' WHERE event_id = ANY(%s)",
                ([e.event_id for e in old],),
            )
        read = await eventstore.read_all(
            conn, after=eventstore.START, limit=2, whole_transactions=True
        )

    assert [e.event_id for e in read] == [e.event_id for e in old[:2]]


async def test_read_all_pages_with_after_and_limit(pool: Pool) -> None:
    async with pool.connection() as conn:
        start = await eventstore.head(conn)
        recorded = await eventstore.append(conn, [requested(uuid.uuid4()) for _ in range(5)])
        assert await eventstore.wait_readable(conn)
        first = await eventstore.read_all(conn, after=start, limit=1)
        page = await eventstore.read_all(conn, after=first.checkpoint, limit=2)

    assert [e.event_id for e in page] == [e.event_id for e in recorded[1:3]]
    assert page.checkpoint.position == recorded[2].position


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


async def test_pooled_sessions_end_a_transaction_left_idle(
    database_factory: DatabaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that went quiet mid-transaction would hold every reader back: the services'
    pools have PostgreSQL end it (idle_in_transaction_session_timeout)."""
    monkeypatch.setenv("PG_IDLE_IN_TRANSACTION_TIMEOUT", "300ms")
    pool = await open_pool(database_factory("idle"), name="test", max_size=1)
    async with pool:
        await pool.wait()
        async with pool.connection() as conn:
            cur = await conn.execute("SHOW idle_in_transaction_session_timeout")
            assert (await cur.fetchone() or {})["idle_in_transaction_session_timeout"] == "300ms"
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):  # noqa: PT012
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_current_xact_id()")
                await asyncio.sleep(1)
                await conn.execute("SELECT 1")


def _new_stream_events(n: int) -> list[eventstore.NewStreamEvent]:
    return [eventstore.new_stream_event(requested(uuid.uuid4())) for _ in range(n)]


async def test_append_new_streams_opens_each_stream_at_version_one_in_order(pool: Pool) -> None:
    events = _new_stream_events(50)
    async with pool.connection() as conn:
        assert await eventstore.append_new_streams(conn, events) == 50
        assert await eventstore.wait_readable(conn)
        read = await eventstore.read_all(conn, after=eventstore.START)
    assert [str(e.event_id) for e in read] == [e["event_id"] for e in events]
    assert [e.stream_id for e in read] == [e["stream_id"] for e in events]
    assert {e.stream_version for e in read} == {1}
    positions = [e.position or 0 for e in read]
    assert positions == sorted(positions)
    assert len(set(positions)) == 50
    assert all(isinstance(e.event(), CallRequested) for e in read)


async def test_append_new_streams_to_an_existing_stream_appends_nothing(pool: Pool) -> None:
    taken = uuid.uuid4()
    async with pool.connection() as conn:
        await eventstore.append(conn, [requested(taken)])
        events = [*_new_stream_events(3), eventstore.new_stream_event(requested(taken))]
        with pytest.raises(eventstore.ConcurrencyError):
            await eventstore.append_new_streams(conn, events)
        assert await eventstore.wait_readable(conn)
        assert len(await eventstore.read_all(conn, after=eventstore.START)) == 1


async def test_append_new_streams_with_a_stored_event_id_appends_nothing(pool: Pool) -> None:
    events = _new_stream_events(3)
    async with pool.connection() as conn:
        await eventstore.append_new_streams(conn, events[:1])
        again = [*_new_stream_events(2), {**events[0], "stream_id": call_stream(uuid.uuid4())}]
        with pytest.raises(psycopg.errors.UniqueViolation):
            await eventstore.append_new_streams(conn, again)  # type: ignore[arg-type]
        assert await eventstore.wait_readable(conn)
        assert len(await eventstore.read_all(conn, after=eventstore.START)) == 1


async def test_append_new_streams_in_a_transaction_leaves_it_usable(pool: Pool) -> None:
    taken = uuid.uuid4()
    async with pool.connection() as conn:
        await eventstore.append(conn, [requested(taken)])
        async with conn.transaction():
            with pytest.raises(eventstore.ConcurrencyError):
                await eventstore.append_new_streams(
                    conn, [eventstore.new_stream_event(requested(taken))]
                )
            assert await eventstore.append_new_streams(conn, _new_stream_events(2)) == 2
        assert await eventstore.wait_readable(conn)
        assert len(await eventstore.read_all(conn, after=eventstore.START)) == 3


def _initiated(call_id: uuid.UUID) -> CallInitiated:
    return CallInitiated(call_id=call_id, call_sid="CA" + "1" * 32)


async def test_continue_stream_appends_with_the_openers_organization_and_correlation(
    pool: Pool,
) -> None:
    call_id = uuid.uuid4()
    opener = requested(call_id).model_copy(update={"correlation_id": "req-7"})
    event_id = uuid.uuid4()
    async with pool.connection() as conn:
        await eventstore.append(conn, [opener])
        continued = await eventstore.continue_stream(
            conn, call_stream(call_id), _initiated(call_id), event_id=event_id, organization_id=None
        )
        stream = await eventstore.read_stream(conn, call_stream(call_id))
    assert continued is not None
    assert continued.appended
    assert [e.event_id for e in stream] == [opener.event_id, event_id]
    stored = stream[1]
    assert (stored.organization_id, stored.correlation_id, stored.stream_version) == (
        "org_a",
        "req-7",
        2,
    )
    assert stored.event() == _initiated(call_id)
    assert continued.envelope == stored


async def test_continue_stream_of_another_organization_or_no_stream_appends_nothing(
    pool: Pool,
) -> None:
    call_id = uuid.uuid4()
    async with pool.connection() as conn:
        await eventstore.append(conn, [requested(call_id, org="org_a")])
        head = await eventstore.head_position(conn)
        elsewhere = await eventstore.continue_stream(
            conn,
            call_stream(call_id),
            _initiated(call_id),
            event_id=uuid.uuid4(),
            organization_id="org_b",
        )
        missing = await eventstore.continue_stream(
            conn,
            call_stream(uuid.uuid4()),
            _initiated(call_id),
            event_id=uuid.uuid4(),
            organization_id=None,
        )
        assert await eventstore.head_position(conn) == head
        assert len(await eventstore.read_stream(conn, call_stream(call_id))) == 1
    assert (elsewhere, missing) == (None, None)


async def test_continue_stream_stores_an_event_id_once(pool: Pool) -> None:
    call_id = uuid.uuid4()
    event_id = uuid.uuid4()
    async with pool.connection() as conn:
        await eventstore.append(conn, [requested(call_id)])
        results = [
            await eventstore.continue_stream(
                conn,
                call_stream(call_id),
                _initiated(call_id),
                event_id=event_id,
                organization_id="org_a",
            )
            for _ in range(2)
        ]
        stream = await eventstore.read_stream(conn, call_stream(call_id))
    first, repeated = results
    assert first is not None
    assert first.appended
    assert repeated is not None  # found, not a 404
    assert not repeated.appended
    assert [e.stream_version for e in stream] == [1, 2]


async def test_racing_continue_stream_calls_both_land_in_order(pool: Pool) -> None:
    """Two reports on one call at once (two callbacks): the second waits on the unique
    (stream_id, stream_version) index, loses, and is appended again as version 3."""
    call_id = uuid.uuid4()
    stream_id = call_stream(call_id)
    async with pool.connection() as a, pool.connection() as b:
        await eventstore.append(a, [requested(call_id)])
        async with a.transaction():
            first = await eventstore.continue_stream(
                a, stream_id, _initiated(call_id), event_id=uuid.uuid4(), organization_id="org_a"
            )
            racing = asyncio.create_task(
                eventstore.continue_stream(
                    b,
                    stream_id,
                    canceled(call_id).event(),
                    event_id=uuid.uuid4(),
                    organization_id="org_a",
                )
            )
            await asyncio.sleep(0.3)
            assert not racing.done()  # waiting on a's uncommitted version 2
        second = await racing
        stream = await eventstore.read_stream(a, stream_id)
    assert first is not None
    assert second is not None
    assert (first.envelope.stream_version, second.envelope.stream_version) == (2, 3)
    assert [e.stream_version for e in stream] == [1, 2, 3]


async def test_the_lag_query_reads_the_index_in_the_plan_postgresql_caches(pool: Pool) -> None:
    """Readers ask their lag once a second; the generic plan PostgreSQL caches for the prepared
    statement, before and after the table has statistics, must not scan the whole store (it
    did: 71 ms a question with 500,000 events, for a reader 11 events behind)."""
    caught_up = {"tx": "0", "position": 0, "cap": 100_000}
    async with pool.connection() as conn:
        # no statistics until the test asks for them
        await conn.execute("ALTER TABLE eventstore.events SET (autovacuum_enabled = false)")
        for _ in range(5):
            await eventstore.append_new_streams(
                conn,
                [eventstore.new_stream_event(requested(uuid.uuid4())) for _ in range(10_000)],
            )
        before_statistics = await plans.plan(conn, eventstore._LAG, caught_up)
        await conn.execute("ANALYZE eventstore.events")
        after_statistics = await plans.plan(conn, eventstore._LAG, caught_up)
    for shown in (before_statistics, after_statistics):
        assert plans.scans(shown) == [], shown
        assert "events_read_order" in shown, shown


async def test_read_organization_returns_one_tenants_events_window_by_window(
    pool: Pool,
) -> None:
    async with pool.connection() as conn:
        start = await eventstore.head(conn)
        mine, theirs = [], []
        for _ in range(3):
            [a] = await eventstore.append(conn, [requested(uuid.uuid4(), org="org_a")])
            [b] = await eventstore.append(conn, [requested(uuid.uuid4(), org="org_b")])
            mine.append(a.event_id)
            theirs.append(b)
        assert await eventstore.wait_readable(conn)
        windows, cursor = [], start
        for _ in range(4):
            window = await eventstore.read_organization(conn, "org_a", after=cursor, limit=2)
            windows.append(window)
            cursor = window.events.checkpoint
    # two events looked at a window, org_a's returned, the next window after org_b's
    assert [[e.event_id for e in w.events] for w in windows] == [[m] for m in mine] + [[]]
    assert [w.full for w in windows] == [True, True, True, False]
    assert [w.events.checkpoint.position for w in windows[:3]] == [b.position for b in theirs]
    assert windows[3].events.checkpoint == windows[2].events.checkpoint
    assert all(e.organization_id == "org_a" for w in windows for e in w.events)


async def test_read_organization_ends_before_what_an_open_transaction_holds_back(
    pool: Pool,
) -> None:
    """An event committed behind a transaction still open is neither returned nor passed,
    and is read once it is readable."""
    async with pool.connection() as reader, pool.connection() as idle:
        assert await eventstore.wait_readable(reader)
        start = await eventstore.head(reader)
        async with idle.transaction():
            await idle.execute("SELECT pg_current_xact_id()")  # a writer that went quiet
            [held] = await eventstore.append(reader, [requested(uuid.uuid4(), org="org_a")])
            window = await eventstore.read_organization(reader, "org_a", after=start)
            assert list(window.events) == []
            assert window.events.checkpoint == start
            assert not window.full
        assert await eventstore.wait_readable(reader)
        later = await eventstore.read_organization(reader, "org_a", after=start)
    assert [e.event_id for e in later.events] == [held.event_id]


async def test_read_organization_reads_the_index_in_the_plan_postgresql_caches(
    pool: Pool,
) -> None:
    """A replay pages through the whole store: from its start, and in the generic plan, each
    window must be read from the read-order index, not by scanning and sorting the store."""
    from_the_start = {"tx": "0", "position": 0, "organization_id": "org_b", "limit": 1000}
    async with pool.connection() as conn:
        for _ in range(5):
            await eventstore.append_new_streams(
                conn,
                [eventstore.new_stream_event(requested(uuid.uuid4())) for _ in range(10_000)],
            )
        await conn.execute("ANALYZE eventstore.events")
        shown = [
            await plans.plan(conn, eventstore._ORGANIZATION_WINDOW, from_the_start, mode)
            for mode in ("force_custom_plan", "force_generic_plan")
        ]
    for plan in shown:
        assert plans.scans(plan) == [], plan
        assert "events_read_order" in plan, plan
