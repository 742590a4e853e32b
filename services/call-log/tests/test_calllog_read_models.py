"""The projector and the queries over the read models it builds, against real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any

import calls_events as ev
import psycopg
import pytest
from call_log import queries
from call_log.__main__ import migrate
from call_log.projector import CHECKPOINT, Projector, apply_events, projected_and_head, rebuild
from calls_events import CarrierStatus, Envelope, Event, UnknownEventType, call_stream
from calls_platform import eventstore
from calls_platform.db import Conn, Pool, open_pool
from calls_platform.migrate import migrate_event_store
from calls_testing import new_org_id
from calls_testing.events import wrap_batch
from pydantic import ValidationError

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Calls:
    """Builds the envelopes of one organization's calls and batches."""

    def __init__(self, organization_id: str) -> None:
        self.org = organization_id

    def for_org(self, organization_id: str) -> Calls:
        return Calls(organization_id)

    def _wrap(self, event: Event, stream_id: str, minutes: float) -> Envelope:
        return Envelope.wrap(
            event, stream_id=stream_id, organization_id=self.org, occurred_at=at(minutes)
        )

    def requested(
        self,
        call_id: uuid.UUID,
        minutes: float = 0,
        *,
        to_number: str = "+15551230001",
        from_number: str = "+15559870002",
        **fields: Any,
    ) -> Envelope:
        event = ev.CallRequested(
            call_id=call_id,
            to_number=to_number,
            from_number=from_number,
            requested_by="key_1",
            **fields,
        )
        return self._wrap(event, call_stream(call_id), minutes)

    def initiated(self, call_id: uuid.UUID, minutes: float) -> Envelope:
        event = ev.CallInitiated(call_id=call_id, call_sid=sid(call_id))
        return self._wrap(event, call_stream(call_id), minutes)

    def report(
        self,
        call_id: uuid.UUID,
        status: CarrierStatus,
        minutes: float,
        *,
        duration: int | None = None,
        answered_by: str | None = None,
    ) -> Envelope:
        event = ev.CallStatusReported(
            call_id=call_id,
            call_sid=sid(call_id),
            carrier_status=status,
            duration_seconds=duration,
            answered_by=answered_by,
            reported_at=at(minutes),
        )
        return self._wrap(event, call_stream(call_id), minutes)

    def failed(self, call_id: uuid.UUID, minutes: float, code: int | None = None) -> Envelope:
        event = ev.CallFailed(call_id=call_id, error_code=code, error_message="carrier refused")
        return self._wrap(event, call_stream(call_id), minutes)

    def canceled(self, call_id: uuid.UUID, minutes: float) -> Envelope:
        event = ev.CallCanceled(call_id=call_id, reason="batch canceled")
        return self._wrap(event, call_stream(call_id), minutes)

    def batch(self, batch_id: str, total: int, minutes: float = 0) -> Envelope:
        event = ev.BatchRequested(
            batch_id=batch_id,
            total=total,
            from_number="+15559870002",
            duplicates_dropped=1,
            requested_by="key_1",
        )
        return self._wrap(event, batch_id, minutes)

    def carrying_batch(
        self, batch_id: str, numbers: list[str], minutes: float = 0
    ) -> tuple[Envelope, list[Envelope]]:
        """A BatchRequested carrying its calls, as the gateway appends it, and each call's
        CallRequested as the dialer appends it on the call's stream when it handles it."""
        batch = wrap_batch(
            numbers,
            self.org,
            from_number="+15559870002",
            batch_id=batch_id,
            occurred_at=at(minutes),
            requested_by="key_1",
            agent_id=AGENT,
            agent_name="Ada",
        )
        event = batch.event()
        assert isinstance(event, ev.BatchRequested)
        return batch, ev.requested_call_envelopes(batch, event)

    def batch_canceled(self, batch_id: str, minutes: float) -> Envelope:
        event = ev.BatchCancelRequested(batch_id=batch_id, requested_by="key_1")
        return self._wrap(event, batch_id, minutes)


def new_batch_id() -> str:
    return f"batch-{uuid.uuid4().hex}"


def sid(call_id: uuid.UUID) -> str:
    return "CA" + call_id.hex


class CallLogDatabase:
    """The event store and the call log's read models in one test database."""

    def __init__(self, url: str, pool: Pool) -> None:
        self.url = url
        self.pool = pool

    async def append(self, *events: Envelope) -> list[Envelope]:
        """Append, and wait until the events can be read (no older transaction is open)."""
        async with self.pool.connection() as conn:
            recorded = await eventstore.append(conn, events)
            assert await eventstore.wait_readable(conn)
        return recorded

    async def project(self, batch_size: int = 2000) -> int:
        """Run the projector until it has nothing left to apply; return how many it applied."""
        projector = Projector(self.pool, batch_size=batch_size)
        total = 0
        while applied := await projector.step():
            total += applied
        return total

    async def rows(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of the read models."""
        async with self.pool.connection() as conn:
            return await read_models(conn)

    async def checkpoint(self) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT position FROM call_log.checkpoints WHERE name = %s", (CHECKPOINT,)
            )
            row = await cur.fetchone()
        assert row is not None
        return int(row["position"])


async def read_models(conn: Conn) -> dict[str, list[dict[str, Any]]]:
    calls = await conn.execute("SELECT * FROM call_log.calls ORDER BY call_id")
    batches = await conn.execute("SELECT * FROM call_log.batches ORDER BY batch_id")
    return {"calls": await calls.fetchall(), "batches": await batches.fetchall()}


@pytest.fixture
async def db(calllog_url: str) -> AsyncIterator[CallLogDatabase]:
    pool = await open_pool(calllog_url, name="test-call-log")
    async with pool:
        yield CallLogDatabase(calllog_url, pool)


@pytest.fixture(scope="module")
async def shared_db(
    database_factory: Callable[[str], str],
) -> AsyncIterator[CallLogDatabase]:
    """One database for the query tests, which isolate themselves by organization."""
    url = database_factory("calllog_queries")
    await migrate(url)
    pool = await open_pool(url, name="test-call-log-queries")
    async with pool:
        yield CallLogDatabase(url, pool)


@pytest.fixture
def calls() -> Calls:
    return Calls(new_org_id())


# --- the projector ---------------------------------------------------------------------------

AGENT = uuid.UUID("00000000-0000-4000-8000-00000000a6e7")


async def test_projector_folds_a_calls_events_into_its_row(
    db: CallLogDatabase, calls: Calls
) -> None:
    call_id = uuid.uuid4()
    recorded = await db.append(
        calls.requested(call_id, 0, agent_id=AGENT, agent_name="Ada"),
        calls.initiated(call_id, 1),
        calls.report(call_id, "ringing", 2),
        calls.report(call_id, "in-progress", 3),
        calls.report(call_id, "completed", 10, duration=420, answered_by="human"),
    )

    assert await db.project() == 5

    [row] = (await db.rows())["calls"]
    assert row | EXPECTED_COMPLETED == row
    assert (row["call_id"], row["organization_id"], row["agent_id"]) == (
        call_id,
        calls.org,
        AGENT,
    )
    assert (row["created_at"], row["start_time"], row["end_time"]) == (at(0), at(1), at(10))
    assert row["sort_time"] == at(1)
    assert row["call_sid"] == sid(call_id)
    assert row["last_position"] == recorded[-1].position
    assert await db.checkpoint() == recorded[-1].position


async def test_projector_shows_a_recording_only_once_it_is_stored(
    db: CallLogDatabase, calls: Calls
) -> None:
    call_id = uuid.uuid4()
    recording_sid = "RE" + call_id.hex
    stream = call_stream(call_id)

    def wrap(event: Event, minutes: float) -> Envelope:
        return calls._wrap(event, stream, minutes)

    await db.append(
        calls.requested(call_id, 0),
        calls.initiated(call_id, 1),
        calls.report(call_id, "completed", 2, duration=60),
        wrap(
            ev.RecordingReported(
                call_id=call_id,
                call_sid=sid(call_id),
                recording_sid=recording_sid,
                recording_url=f"https://carrier.test/Recordings/{recording_sid}",
                status="completed",
                duration_seconds=60,
            ),
            3,
        ),
    )
    await db.project()
    [row] = (await db.rows())["calls"]
    assert row["recording_url"] is None

    await db.append(
        wrap(
            ev.RecordingStored(
                call_id=call_id,
                call_sid=sid(call_id),
                recording_sid=recording_sid,
                storage_key=f"0123456789abcdef/{call_id}/{recording_sid}.wav",
                size_bytes=960_044,
                content_type="audio/wav",
                duration_seconds=60,
            ),
            4,
        )
    )
    await db.project()
    [row] = (await db.rows())["calls"]
    assert row["recording_url"] == f"call-{sid(call_id)}.wav"
    assert (row["status"], row["outcome"]) == ("completed", "completed")

    await db.append(
        wrap(ev.RecordingDeleted(call_id=call_id, recording_sid=recording_sid, requested_by="u"), 5)
    )
    await db.project()
    [row] = (await db.rows())["calls"]
    assert row["recording_url"] is None


EXPECTED_COMPLETED = {
    "status": "completed",
    "outcome": "completed",
    "carrier_status": "completed",
    "duration": 420.0,
    "answered_by": "human",
    "direction": "outbound",
    "agent_name": "Ada",
}


async def test_step_applies_at_most_a_batch_and_checkpoints_each(
    db: CallLogDatabase, calls: Calls
) -> None:
    recorded = [(await db.append(calls.requested(uuid.uuid4())))[0] for _ in range(5)]
    projector = Projector(db.pool, batch_size=2)

    applied = [await projector.step() for _ in range(4)]

    assert applied == [2, 2, 1, 0]
    assert await db.checkpoint() == recorded[-1].position
    async with db.pool.connection() as conn:
        projected, head = await projected_and_head(conn)
    assert projected == head
    assert projected.position == recorded[-1].position


async def test_a_step_applies_what_one_append_wrote_all_at_once(
    db: CallLogDatabase, calls: Calls
) -> None:
    """A batch and its calls, appended in one transaction, are never projected in part, even
    when they are more events than a step takes: a read that ran out of waiting would show
    `total` 4 beside fewer entries (the first 2,000-event step of a 10,000-call batch ended
    after 1,999 of its calls)."""
    batch_id = new_batch_id()
    await db.append(
        calls.batch(batch_id, 4),
        *(calls.requested(uuid.uuid4(), batch_id=batch_id, batch_index=i) for i in range(4)),
    )
    [after] = await db.append(calls.requested(uuid.uuid4()))  # a transaction of its own
    projector = Projector(db.pool, batch_size=2)

    first = await projector.step()
    async with db.pool.connection() as conn:
        batch = await queries.get_batch(conn, calls.org, batch_id)

    assert first == 5
    assert batch is not None
    assert (batch["total"], batch["queued"], len(batch["calls"])) == (4, 4, 4)
    assert [await projector.step(), await projector.step()] == [1, 0]
    assert await db.checkpoint() == after.position


async def test_a_step_takes_no_transaction_id_until_it_writes_so_readers_do_not_wait_for_it(
    db: CallLogDatabase, calls: Calls
) -> None:
    """A transaction with an id holds back every event-store reader in the cluster until it
    ends. A step reads and folds first and writes last, so while it is stuck before its
    first write (here on a table lock) events committed meanwhile can be read."""
    await db.append(calls.batch("batch-held", 1), calls.requested(uuid.uuid4()))
    async with await psycopg.AsyncConnection.connect(db.url) as blocker:
        await blocker.execute("LOCK TABLE call_log.calls, call_log.batches IN SHARE MODE")
        step = asyncio.create_task(Projector(db.pool).step())
        async with await psycopg.AsyncConnection.connect(db.url, autocommit=True) as probe:

            async def waiting() -> dict[str, Any] | None:
                cur = await probe.execute(
                    "SELECT pid, backend_xid::text AS xid FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                row = await cur.fetchone()
                return None if row is None else {"pid": row[0], "xid": row[1]}

            deadline = asyncio.get_running_loop().time() + 10
            while (stuck := await waiting()) is None:
                assert asyncio.get_running_loop().time() < deadline, "the step never blocked"
                await asyncio.sleep(0.01)
            assert stuck["xid"] is None  # stuck at its first write, it holds no id
            await db.append(calls.requested(uuid.uuid4()))  # committed while the step waits
            async with db.pool.connection() as conn:
                assert await eventstore.wait_readable(conn, seconds=2)  # the head is readable
        await blocker.rollback()
    assert await step == 2


async def test_projection_lag_is_what_is_committed_but_not_applied(
    db: CallLogDatabase, calls: Calls
) -> None:
    [projected_event] = await db.append(calls.requested(uuid.uuid4()))
    await db.project()
    recorded = await db.append(calls.requested(uuid.uuid4()), calls.requested(uuid.uuid4()))

    async with db.pool.connection() as conn:
        projected, head = await projected_and_head(conn)

    assert (projected.position, head.position) == (projected_event.position, recorded[-1].position)
    assert projected < head


async def test_applying_the_same_events_twice_changes_nothing(
    db: CallLogDatabase, calls: Calls
) -> None:
    answered, busy, batched = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await db.append(
        calls.batch("b-twice", 1),
        calls.requested(batched, batch_id="b-twice", batch_index=0),
        calls.requested(answered),
        calls.initiated(answered, 1),
        calls.report(answered, "completed", 5, duration=240, answered_by="machine_start"),
        calls.requested(busy),
        calls.report(busy, "busy", 2),
        calls.batch_canceled("b-twice", 3),
        calls.canceled(batched, 3),
    )
    async with db.pool.connection() as conn:
        events = await eventstore.read_all(conn, after=0)
        async with conn.transaction():
            await apply_events(conn, events)
            once = await read_models(conn)
            await apply_events(conn, events)
            twice = await read_models(conn)

    assert twice == once
    assert len(once["calls"]) == 3
    assert len(once["batches"]) == 1


async def test_a_batch_that_fails_to_apply_changes_no_row_and_no_checkpoint(
    db: CallLogDatabase, calls: Calls
) -> None:
    """Rows and checkpoint commit together, so a crash mid-batch never applies half of it."""
    await db.append(
        calls.requested(uuid.uuid4()),
        Envelope(
            event_type="NotAnEventWeKnow",
            event_version=1,
            stream_id="nowhere",
            organization_id=calls.org,
            data={},
        ),
    )

    with pytest.raises(UnknownEventType):
        await Projector(db.pool).step()

    assert await db.checkpoint() == 0
    assert await db.rows() == {"calls": [], "batches": []}


async def test_rebuild_produces_exactly_the_rows_of_incremental_projection(
    db: CallLogDatabase, calls: Calls
) -> None:
    other = calls.for_org(f"{calls.org}_other")
    done, voicemail, busy, invalid, ringing, queued = (uuid.uuid4() for _ in range(6))
    in_batch = [uuid.uuid4() for _ in range(3)]
    history: list[list[Envelope]] = [
        [
            calls.requested(done, 0, agent_id=AGENT, agent_name="Ada"),
            calls.requested(voicemail, 0.5),
            other.requested(busy, 1),
        ],
        [calls.initiated(done, 1), calls.report(done, "ringing", 2)],
        [
            calls.report(done, "in-progress", 3),
            calls.report(done, "ringing", 2),  # late
            calls.initiated(voicemail, 2),
            calls.report(voicemail, "completed", 4, duration=31, answered_by="machine_start"),
        ],
        [
            other.report(busy, "busy", 2),
            calls.requested(invalid, 3),
            calls.failed(invalid, 3.5, code=21211),
            calls.requested(ringing, 4),
        ],
        [
            calls.report(ringing, "ringing", 5),
            calls.initiated(ringing, 4.5),  # after the carrier's report
            calls.report(done, "completed", 9, duration=360),
            calls.report(done, "completed", 9, duration=360),  # twice
            calls.failed(done, 10, code=21211),  # after the end
            calls.requested(queued, 6),
        ],
        [
            calls.batch("b-rebuild", 3, 7),
            *(
                calls.requested(c, 7, batch_id="b-rebuild", batch_index=i)
                for i, c in enumerate(in_batch)
            ),
        ],
        [
            calls.initiated(in_batch[0], 8),
            calls.batch_canceled("b-rebuild", 8.5),
            calls.canceled(in_batch[1], 8.5),
            calls.canceled(in_batch[2], 8.5),
        ],
    ]
    # a batch carrying its calls, whose calls' own requests come as the dialer handles them
    carried, opened = calls.carrying_batch("b-carried", ["+15551230101", "+15551230102"], 8.6)
    carried_ids = [uuid.UUID(e.data["call_id"]) for e in opened]
    history += [
        [carried],
        [opened[0], calls.initiated(carried_ids[0], 8.7)],
        [opened[1], calls.canceled(carried_ids[1], 8.8)],
    ]
    inbound = uuid.uuid4()
    history.append(
        [
            calls._wrap(
                ev.InboundCallReceived(
                    call_id=inbound,
                    call_sid=sid(inbound),
                    from_number="+15551239999",
                    to_number="+15559870002",
                    agent_id=AGENT,
                    agent_name="Ada",
                    received_at=at(9),
                ),
                call_stream(inbound),
                9,
            ),
            calls.report(inbound, "completed", 10, duration=12),
            calls._wrap(
                ev.ConversationReported(
                    call_id=inbound,
                    transcript=[{"role": "agent", "content": "Hi"}],
                    provider_usage={"openai": {"type": "llm", "model": "gpt-4o"}},
                    ended_by="caller",
                ),
                call_stream(inbound),
                10,
            ),
            calls._wrap(ev.ConversationReported(call_id=done), call_stream(done), 10),  # empty
        ]
    )
    for events in history:
        await db.append(*events)
        await db.project(batch_size=3)
    incremental = await db.rows()

    replayed = await rebuild(db.pool, batch_size=4)

    assert replayed == sum(len(events) for events in history)
    assert await db.rows() == incremental
    assert len(incremental["calls"]) == 12
    by_id = {row["call_id"]: row for row in incremental["calls"]}
    assert [by_id[c]["status"] for c in carried_ids] == ["in-progress", "failed"]
    assert {by_id[c]["created_at"] for c in carried_ids} == {at(8.6)}
    assert (by_id[inbound]["status"], by_id[inbound]["outcome"]) == ("completed", "caller_hangup")
    assert (by_id[done]["transcript"], by_id[done]["provider_usage"]) == (None, None)
    assert by_id[queued]["call_sid"] == f"queued-{queued.hex[:12]}"


async def test_rebuild_restores_read_models_that_were_damaged(
    db: CallLogDatabase, calls: Calls
) -> None:
    call_id = uuid.uuid4()
    await db.append(calls.requested(call_id), calls.report(call_id, "busy", 1))
    await db.project()
    before = await db.rows()
    async with db.pool.connection() as conn:
        await conn.execute("UPDATE call_log.calls SET status = 'queued', outcome = NULL")
        await conn.execute("UPDATE call_log.checkpoints SET position = 0")

    await rebuild(db.pool)

    assert await db.rows() == before


# --- listing calls ---------------------------------------------------------------------------


class Seeded:
    """One organization's calls, covering every status, in a known order."""

    def __init__(self) -> None:
        names = ["late_start", "ringing", "queued", "invalid", "busy", "voicemail", "canceled"]
        self.ids = {name: uuid.uuid4() for name in [*names, "completed"]}

    def __getattr__(self, name: str) -> uuid.UUID:
        return self.ids[name]


async def seed(db: CallLogDatabase, calls: Calls) -> Seeded:
    s = Seeded()
    await db.append(
        calls.requested(s.completed, 0, to_number="+15551230001"),
        calls.initiated(s.completed, 1),
        calls.report(s.completed, "completed", 5, duration=200, answered_by="human"),
        calls.requested(s.late_start, 0.5, to_number="+15551230009"),
        calls.requested(s.canceled, 1.5, to_number="+15551230007"),
        calls.canceled(s.canceled, 2),
        calls.requested(s.voicemail, 2, to_number="+15551230002"),
        calls.initiated(s.voicemail, 3),
        calls.report(s.voicemail, "completed", 6, duration=20, answered_by="machine_end_beep"),
        calls.requested(s.busy, 4, to_number="+442071838750"),
        calls.initiated(s.busy, 5),
        calls.report(s.busy, "busy", 6),
        calls.requested(s.invalid, 6, to_number="+15551230004"),
        calls.failed(s.invalid, 6.5, code=21211),
        calls.requested(s.queued, 7, to_number="+15551230005", from_number="+15550000000"),
        calls.requested(s.ringing, 8, to_number="+15551230006", agent_id=AGENT),
        calls.initiated(s.ringing, 9),
        calls.report(s.ringing, "ringing", 9.5),
        calls.initiated(s.late_start, 10),  # created early, dialed last
    )
    await db.project()
    return s


NEWEST_FIRST = [
    "late_start",  # started at 10
    "ringing",  # started at 9
    "queued",  # not started, created at 7
    "invalid",  # not started, created at 6
    "busy",  # started at 5
    "voicemail",  # started at 3
    "canceled",  # not started, created at 1.5
    "completed",  # started at 1
]


async def list_ids(
    db: CallLogDatabase, calls: Calls, s: Seeded, **params: Any
) -> tuple[list[str], int]:
    """The names of the listed calls, and the total."""
    names = {str(v): k for k, v in s.ids.items()}
    async with db.pool.connection() as conn:
        page = await queries.list_calls(conn, calls.org, queries.ListQuery.model_validate(params))
    return [names[item["call_id"]] for item in page["items"]], page["total"]


async def test_list_is_newest_first_by_start_or_creation_time(
    shared_db: CallLogDatabase, calls: Calls
) -> None:
    s = await seed(shared_db, calls)

    assert await list_ids(shared_db, calls, s) == (NEWEST_FIRST, 8)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("queued", ["queued"]),
        ("in-progress", ["late_start", "ringing"]),  # dialed, and ringing at the carrier
        ("completed", ["voicemail", "completed"]),  # a status as well as an outcome: status wins
        ("failed", ["invalid", "busy", "canceled"]),
        ("canceled", ["canceled"]),  # an outcome
        ("voicemail", ["voicemail"]),
        ("busy", ["busy"]),
        ("invalid_number", ["invalid"]),
        ("no_answer", []),
        ("caller_hangup", []),
    ],
)
async def test_list_filters_by_status_or_outcome(
    shared_db: CallLogDatabase, calls: Calls, status: str, expected: list[str]
) -> None:
    s = await seed(shared_db, calls)

    assert await list_ids(shared_db, calls, s, status=status) == (expected, len(expected))


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("1230002", ["voicemail"]),
        ("+4420", ["busy"]),
        ("5550000", ["queued"]),  # matches the from number
        (
            "+1555123000",
            ["late_start", "ringing", "queued", "invalid", "voicemail", "canceled", "completed"],
        ),
        ("%", []),
        ("_", []),
        ("\\", []),
        ("1_3", []),
        ("+1555123000%", []),
        ("555%0", []),
    ],
)
async def test_search_matches_numbers_literally(
    shared_db: CallLogDatabase, calls: Calls, search: str, expected: list[str]
) -> None:
    s = await seed(shared_db, calls)

    assert await list_ids(shared_db, calls, s, search=search) == (expected, len(expected))


async def test_list_filters_by_direction_and_agent(
    shared_db: CallLogDatabase, calls: Calls
) -> None:
    s = await seed(shared_db, calls)

    assert await list_ids(shared_db, calls, s, direction="outbound") == (NEWEST_FIRST, 8)
    assert await list_ids(shared_db, calls, s, direction="inbound") == ([], 0)
    assert await list_ids(shared_db, calls, s, agent_id=str(AGENT)) == (["ringing"], 1)
    assert await list_ids(shared_db, calls, s, agent_id=str(uuid.uuid4())) == ([], 0)


async def test_the_agent_filter_reads_its_index_not_the_organizations_calls(
    db: CallLogDatabase,
) -> None:
    """GET /calls?agent_id=…: the total and the page's ids (the statements list_calls sends
    for that filter) come from calls_org_agent_sort, with 50,000 calls of one organization
    over 50 agents (before: a scan of every call of the organization, 65 to 78 ms at 1,000,000)."""
    agents = [uuid.uuid4() for _ in range(50)]
    async with db.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO call_log.calls (call_id, organization_id, call_sid, direction, status,"
            " canceled, from_number, to_number, agent_id, created_at, last_position)"
            " SELECT gen_random_uuid(), 'org_agents', 'queued-' || n, 'outbound', 'queued',"
            " false, '+15550000000', '+1555' || lpad(n::text, 7, '0'), (%s::uuid[])[n %% 50 + 1],"
            " now() - n * interval '1 second', n FROM generate_series(1, 50000) n",
            (agents,),
        )
        await conn.execute("ANALYZE call_log.calls")
        where = "organization_id = 'org_agents' AND agent_id = %s"
        shown = []
        for statement in (
            f"SELECT count(*) AS total FROM call_log.calls WHERE {where}",
            f"SELECT call_id FROM call_log.calls WHERE {where}"
            " ORDER BY sort_time DESC, call_id DESC LIMIT 20 OFFSET 0",
        ):
            cur = await conn.execute(f"EXPLAIN {statement}", (agents[7],))
            shown.append("\n".join(str(row["QUERY PLAN"]) for row in await cur.fetchall()))
    for plan in shown:
        assert "calls_org_agent_sort" in plan, plan
        assert "Seq Scan" not in plan, plan


@pytest.mark.parametrize("carrier_only", ["initiated", "ringing", "no-answer"])
def test_a_carrier_status_that_is_no_call_status_is_refused_with_a_hint(
    carrier_only: str,
) -> None:
    with pytest.raises(ValidationError) as refused:
        queries.ListQuery(status=carrier_only)

    message = refused.value.errors()[0]["msg"]
    assert f"'{carrier_only}' is a carrier status" in message
    assert "in-progress" in message


def test_a_status_filter_in_neither_vocabulary_names_both() -> None:
    with pytest.raises(ValidationError) as refused:
        queries.ListQuery(status="answered")

    message = refused.value.errors()[0]["msg"]
    assert "queued, in-progress, completed, failed" in message
    assert "voicemail" in message


async def test_list_filters_by_start_time_from_inclusive_to_exclusive(
    shared_db: CallLogDatabase, calls: Calls
) -> None:
    s = await seed(shared_db, calls)

    window = await list_ids(
        shared_db, calls, s, **{"from": at(3).isoformat(), "to": at(9).isoformat()}
    )
    since = await list_ids(shared_db, calls, s, **{"from": at(9).isoformat()})
    until = await list_ids(shared_db, calls, s, to=at(3).isoformat())

    # by the start_time each call shows: when it was queued, for a call not started yet
    assert window == (["queued", "invalid", "busy", "voicemail"], 4)
    assert since == (["late_start", "ringing"], 2)
    assert until == (["canceled", "completed"], 2)


async def test_filters_combine(shared_db: CallLogDatabase, calls: Calls) -> None:
    s = await seed(shared_db, calls)

    assert await list_ids(shared_db, calls, s, status="completed", search="1230001") == (
        ["completed"],
        1,
    )


async def test_pages_split_the_list_and_a_page_past_the_end_is_empty(
    shared_db: CallLogDatabase, calls: Calls
) -> None:
    s = await seed(shared_db, calls)

    pages = [await list_ids(shared_db, calls, s, page=n, page_size=3) for n in (1, 2, 3, 4)]

    assert pages == [
        (NEWEST_FIRST[0:3], 8),
        (NEWEST_FIRST[3:6], 8),
        (NEWEST_FIRST[6:8], 8),
        ([], 8),
    ]
    assert await list_ids(shared_db, calls, s, page=1000, status="busy") == ([], 1)


async def test_list_page_carries_its_paging(shared_db: CallLogDatabase, calls: Calls) -> None:
    await seed(shared_db, calls)

    async with shared_db.pool.connection() as conn:
        page = await queries.list_calls(conn, calls.org, queries.ListQuery(page=2, page_size=5))

    assert (page["page"], page["page_size"], page["total"], len(page["items"])) == (2, 5, 8, 3)
    assert set(page["items"][0]) == {name for name, _ in queries.LIST_FIELDS}


async def test_calls_with_the_same_time_are_ordered_by_id(
    shared_db: CallLogDatabase, calls: Calls
) -> None:
    ids = sorted(uuid.uuid4() for _ in range(3))
    await shared_db.append(*(calls.requested(call_id, 1) for call_id in ids))
    await shared_db.project()

    async with shared_db.pool.connection() as conn:
        page = await queries.list_calls(conn, calls.org, queries.ListQuery())

    assert [item["call_id"] for item in page["items"]] == [str(i) for i in reversed(ids)]


# --- one organization never sees another's calls ---------------------------------------------


async def test_another_organizations_calls_are_invisible(
    shared_db: CallLogDatabase, calls: Calls
) -> None:
    theirs = calls.for_org(f"{calls.org}_other")
    mine, other = uuid.uuid4(), uuid.uuid4()
    batch_id = new_batch_id()
    await shared_db.append(
        calls.requested(mine),
        theirs.requested(other),
        theirs.batch(batch_id, 1),
        theirs.requested(uuid.uuid4(), batch_id=batch_id, batch_index=0),
    )
    await shared_db.project()

    async with shared_db.pool.connection() as conn:
        assert await queries.get_call(conn, calls.org, other) is None
        assert await queries.get_call(conn, theirs.org, other) is not None
        listed = await queries.list_calls(conn, calls.org, queries.ListQuery())
        assert await queries.get_batch(conn, calls.org, batch_id) is None
        assert await queries.get_batch(conn, theirs.org, batch_id) is not None

    assert [item["call_id"] for item in listed["items"]] == [str(mine)]
    assert listed["total"] == 1


async def test_get_call_returns_the_details(shared_db: CallLogDatabase, calls: Calls) -> None:
    call_id = uuid.uuid4()
    await shared_db.append(
        calls.requested(call_id, 0, agent_id=AGENT, agent_name="Ada"),
        calls.initiated(call_id, 1),
        calls.report(call_id, "completed", 2, duration=60, answered_by="machine_start"),
    )
    await shared_db.project()

    async with shared_db.pool.connection() as conn:
        call = await queries.get_call(conn, calls.org, call_id)
        missing = await queries.get_call(conn, calls.org, uuid.uuid4())

    assert missing is None
    assert call is not None
    assert set(call) == {name for name, _ in queries.DETAIL_FIELDS}
    assert (
        call
        | {
            "id": str(call_id),
            "call_id": str(call_id),
            "call_sid": sid(call_id),
            "status": "completed",
            "outcome": "voicemail",
            "answered_by": "machine_start",
            "agent_id": str(AGENT),
            "carrier_status": "completed",
            "duration": 60.0,
            "start_time": at(1).isoformat(),
            "end_time": at(2).isoformat(),
            "transcript": None,
            "provider_usage": None,
            "error_code": None,
        }
        == call
    )


# --- batches ---------------------------------------------------------------------------------


async def get_batch(db: CallLogDatabase, calls: Calls, batch_id: str) -> dict[str, Any]:
    await db.project()
    async with db.pool.connection() as conn:
        batch = await queries.get_batch(conn, calls.org, batch_id)
    assert batch is not None
    return batch


def counts(batch: dict[str, Any]) -> tuple[int, int, int, int]:
    return batch["queued"], batch["initiated"], batch["failed"], batch["canceled"]


async def test_batch_moves_from_queued_through_in_progress_to_completed(
    shared_db: CallLogDatabase, calls: Calls
) -> None:
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    batch_id = new_batch_id()
    await shared_db.append(
        calls.batch(batch_id, 3),
        # committed out of index order
        calls.requested(third, 0, batch_id=batch_id, batch_index=2, to_number="+15551230003"),
        calls.requested(first, 0, batch_id=batch_id, batch_index=0, to_number="+15551230001"),
        calls.requested(second, 0, batch_id=batch_id, batch_index=1, to_number="+15551230002"),
    )
    queued = await get_batch(shared_db, calls, batch_id)

    await shared_db.append(calls.initiated(first, 1))
    in_progress = await get_batch(shared_db, calls, batch_id)

    await shared_db.append(
        calls.report(first, "completed", 3, duration=100),
        calls.failed(second, 2, code=21211),
        calls.initiated(third, 2),
    )
    completed = await get_batch(shared_db, calls, batch_id)

    assert [b["status"] for b in (queued, in_progress, completed)] == [
        "queued",
        "in-progress",
        "completed",
    ]
    assert [counts(b) for b in (queued, in_progress, completed)] == [
        (3, 0, 0, 0),
        (2, 1, 0, 0),
        (0, 2, 1, 0),
    ]
    for batch in (queued, in_progress, completed):
        assert sum(counts(batch)) == batch["total"] == 3
    assert [c["call_id"] for c in completed["calls"]] == [str(first), str(second), str(third)]
    assert [c["to_number"] for c in completed["calls"]] == [
        "+15551230001",
        "+15551230002",
        "+15551230003",
    ]
    assert [c["error"] for c in completed["calls"]] == [None, "carrier refused", None]
    # each entry is in the count its status names, and shows its call's own status beside it
    for batch in (queued, in_progress, completed):
        entries = [c["status"] for c in batch["calls"]]
        assert counts(batch) == tuple(
            entries.count(bucket) for bucket in ("queued", "initiated", "failed", "canceled")
        )
    assert [(c["status"], c["call_status"], c["call_sid"]) for c in completed["calls"]] == [
        ("initiated", "completed", sid(first)),
        ("failed", "failed", None),
        ("initiated", "in-progress", sid(third)),
    ]
    assert [c["call_sid"] for c in queued["calls"]] == [None, None, None]
    assert completed["duplicates_dropped"] == 1
    assert completed["created_at"] == at(0).isoformat()


async def test_a_batch_carrying_its_calls_is_queued_from_its_request(
    shared_db: CallLogDatabase, calls: Calls
) -> None:
    """Its calls are rows from the batch's one event on; each call's own CallRequested,
    appended when the dialer first handles it, changes nothing."""
    batch_id = new_batch_id()
    numbers = ["+15551230011", "+15551230012", "+15551230013"]
    batch, opened = calls.carrying_batch(batch_id, numbers, 1)
    await shared_db.append(batch)
    queued = await get_batch(shared_db, calls, batch_id)
    assert (queued["status"], queued["total"], counts(queued)) == ("queued", 3, (3, 0, 0, 0))
    assert [c["to_number"] for c in queued["calls"]] == numbers
    assert [c["call_id"] for c in queued["calls"]] == [e.data["call_id"] for e in opened]
    first = uuid.UUID(opened[0].data["call_id"])
    before = await detail(shared_db, calls, first)
    assert (before["status"], before["agent_name"], before["batch_id"]) == (
        "queued",
        "Ada",
        batch_id,
    )
    assert before["created_at"] == at(1).isoformat()

    await shared_db.append(opened[0])  # the dialer opens the call's stream
    assert await shared_db.project() == 1
    assert await detail(shared_db, calls, first) == before
    await shared_db.append(calls.initiated(first, 2))
    dialing = await get_batch(shared_db, calls, batch_id)
    assert counts(dialing) == (2, 1, 0, 0)
    await shared_db.project()
    assert (await detail(shared_db, calls, first))["status"] == "in-progress"


async def test_a_batch_whose_cancel_was_requested_is_canceled(
    shared_db: CallLogDatabase, calls: Calls
) -> None:
    dialed, waiting = uuid.uuid4(), uuid.uuid4()
    batch_id = new_batch_id()
    await shared_db.append(
        calls.batch(batch_id, 2),
        calls.requested(dialed, 0, batch_id=batch_id, batch_index=0),
        calls.requested(waiting, 0, batch_id=batch_id, batch_index=1),
        calls.initiated(dialed, 1),
        calls.batch_canceled(batch_id, 2),
    )
    asked = await get_batch(shared_db, calls, batch_id)

    await shared_db.append(calls.canceled(waiting, 2))
    done = await get_batch(shared_db, calls, batch_id)

    assert (asked["status"], counts(asked)) == ("canceled", (1, 1, 0, 0))
    assert (done["status"], counts(done)) == ("canceled", (0, 1, 0, 1))
    assert [c["status"] for c in done["calls"]] == ["initiated", "canceled"]
    assert [(c["call_status"], c["outcome"]) for c in done["calls"]] == [
        ("in-progress", None),
        ("failed", "canceled"),
    ]
    assert [c["error"] for c in done["calls"]] == [None, "batch canceled"]


async def test_an_unknown_batch_is_none(shared_db: CallLogDatabase, calls: Calls) -> None:
    async with shared_db.pool.connection() as conn:
        assert await queries.get_batch(conn, calls.org, "no-such-batch") is None


# --- migration 0003: the reference's vocabulary ----------------------------------------------


async def test_migration_0003_replays_a_read_model_of_the_old_shape_into_the_new(
    database_factory: Callable[[str], str], calls: Calls
) -> None:
    """A database projected before 0003 (old statuses, null placeholders, integer durations)
    ends, after `migrate` and the projector, exactly as if projected from scratch."""
    url = database_factory("calllog_0003")
    migrations = files("call_log").joinpath("migrations")
    async with await open_pool(url, name="test-0003") as pool:
        async with pool.connection() as conn:
            await migrate_event_store(conn)
            await conn.execute("CREATE SCHEMA call_log")
            await conn.execute(
                "CREATE TABLE call_log.schema_migrations"
                " (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for name in ("0001_calls.sql", "0002_history_at_scale.sql"):
                await conn.execute(migrations.joinpath(name).read_text().encode())
                await conn.execute(
                    "INSERT INTO call_log.schema_migrations (name) VALUES (%s)", (name,)
                )
        db = CallLogDatabase(url, pool)
        ringing, queued, done = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        recorded = await db.append(
            calls.requested(ringing, 0),
            calls.initiated(ringing, 1),
            calls.report(ringing, "ringing", 2),
            calls.requested(queued, 3),
            calls.requested(done, 4),
            calls.report(done, "completed", 5, duration=42),
        )
        async with pool.connection() as conn:
            # rows as the projector before 0003 wrote them
            await conn.execute(
                "INSERT INTO call_log.calls (call_id, organization_id, call_sid, direction,"
                " status, from_number, to_number, created_at, start_time, duration,"
                " last_position) VALUES"
                " (%s, %s, %s, 'outbound', 'ringing', '+1', '+2', %s, %s, NULL, 3),"
                " (%s, %s, NULL, 'outbound', 'queued', '+1', '+2', %s, NULL, NULL, 4),"
                " (%s, %s, %s, 'outbound', 'completed', '+1', '+2', %s, %s, 42, 6)",
                (
                    *(ringing, calls.org, sid(ringing), at(0), at(1)),
                    *(queued, calls.org, at(3)),
                    *(done, calls.org, sid(done), at(4), at(5)),
                ),
            )
            await conn.execute(
                "UPDATE call_log.checkpoints SET position = %s", (recorded[-1].position,)
            )

        await migrate(url)
        await db.project()
        migrated = await db.rows()
        await rebuild(pool)

        assert await db.rows() == migrated
        by_id = {row["call_id"]: row for row in migrated["calls"]}
        assert (by_id[ringing]["status"], by_id[ringing]["carrier_status"]) == (
            "in-progress",
            "ringing",
        )
        assert by_id[queued]["call_sid"] == f"queued-{queued.hex[:12]}"
        assert by_id[done]["duration"] == 42.0
        assert isinstance(by_id[done]["duration"], float)


# --- campaigns: variables and metadata, calls the dialer did not place, attempts, pauses ----


def wrap(calls: Calls, event: Event, stream: str, minutes: float) -> Envelope:
    return Envelope.wrap(
        event, stream_id=stream, organization_id=calls.org, occurred_at=at(minutes)
    )


async def detail(db: CallLogDatabase, calls: Calls, call_id: uuid.UUID) -> dict[str, Any]:
    async with db.pool.connection() as conn:
        call = await queries.get_call(conn, calls.org, call_id)
    assert call is not None
    return call


async def test_a_calls_variables_and_metadata_are_in_its_detail(
    shared_db: CallLogDatabase, calls: Calls
) -> None:
    call_id = uuid.uuid4()
    await shared_db.append(
        calls.requested(call_id, variables={"first_name": "Ada"}, metadata={"crm": {"id": 7}})
    )
    await shared_db.project()
    call = await detail(shared_db, calls, call_id)
    assert call["variables"] == {"first_name": "Ada"}
    assert call["metadata"] == {"crm": {"id": 7}}
    assert (call["attempt"], call["previous_call_id"], call["next_call_id"]) == (1, None, None)


async def test_a_call_without_them_shows_empty_variables_and_metadata(
    shared_db: CallLogDatabase, calls: Calls
) -> None:
    call_id = uuid.uuid4()
    await shared_db.append(calls.requested(call_id))
    await shared_db.project()
    call = await detail(shared_db, calls, call_id)
    assert (call["variables"], call["metadata"], call["not_before"]) == ({}, {}, None)


async def test_a_skipped_call_failed_with_outcome_do_not_call(
    shared_db: CallLogDatabase, calls: Calls
) -> None:
    call_id = uuid.uuid4()
    await shared_db.append(
        calls.requested(call_id),
        wrap(calls, ev.CallSkipped(call_id=call_id, reason="do_not_call"), call_stream(call_id), 1),
    )
    await shared_db.project()
    call = await detail(shared_db, calls, call_id)
    assert (call["status"], call["outcome"]) == ("failed", "do_not_call")
    assert call["error_reason"] == "the number is on the do-not-call list"


async def test_a_call_put_off_shows_until_when_then_expires_with_outcome_expired(
    shared_db: CallLogDatabase, calls: Calls
) -> None:
    call_id = uuid.uuid4()
    later = T0 + timedelta(hours=2)
    await shared_db.append(
        calls.requested(call_id),
        wrap(
            calls,
            ev.CallScheduled(call_id=call_id, not_before=later, reason="window"),
            call_stream(call_id),
            1,
        ),
    )
    await shared_db.project()
    call = await detail(shared_db, calls, call_id)
    assert (call["status"], call["not_before"]) == ("queued", later.isoformat())
    await shared_db.append(
        wrap(calls, ev.CallExpired(call_id=call_id, end_at=later), call_stream(call_id), 120)
    )
    await shared_db.project()
    call = await detail(shared_db, calls, call_id)
    assert (call["status"], call["outcome"]) == ("failed", "expired")
    async with shared_db.pool.connection() as conn:
        page = await queries.list_calls(conn, calls.org, queries.ListQuery(status="expired"))
    assert [c["call_id"] for c in page["items"]] == [str(call_id)]


async def test_a_batch_shows_each_recipients_latest_attempt_and_how_many_there_were(
    shared_db: CallLogDatabase, calls: Calls
) -> None:
    batch_id = new_batch_id()
    first, retry, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await shared_db.append(
        calls.batch(batch_id, 2),
        calls.requested(first, batch_id=batch_id, batch_index=0, to_number="+15551230001"),
        calls.requested(other, batch_id=batch_id, batch_index=1, to_number="+15551230002"),
        calls.initiated(first, 1),
        calls.report(first, "busy", 2),
        wrap(
            calls,
            ev.CallRetryScheduled(
                call_id=first, retry_call_id=retry, attempt=2, not_before=at(3), because="busy"
            ),
            call_stream(first),
            2,
        ),
        calls.requested(
            retry,
            3,
            batch_id=batch_id,
            batch_index=0,
            to_number="+15551230001",
            attempt=2,
            previous_call_id=first,
            first_call_id=first,
        ),
    )
    await shared_db.project()
    async with shared_db.pool.connection() as conn:
        batch = await queries.get_batch(conn, calls.org, batch_id)
    assert batch is not None
    assert batch["total"] == 2
    assert [(c["call_id"], c["attempt"], c["attempts"]) for c in batch["calls"]] == [
        (str(retry), 2, 2),
        (str(other), 1, 1),
    ]
    assert (batch["queued"], batch["initiated"], batch["failed"]) == (2, 0, 0)
    assert (await detail(shared_db, calls, first))["next_call_id"] == str(retry)
    second = await detail(shared_db, calls, retry)
    assert (second["previous_call_id"], second["first_call_id"]) == (str(first), str(first))


async def test_a_paused_batch_says_so_until_resumed(
    shared_db: CallLogDatabase, calls: Calls
) -> None:
    batch_id = new_batch_id()
    call_id = uuid.uuid4()
    await shared_db.append(
        calls.batch(batch_id, 1),
        calls.requested(call_id, batch_id=batch_id, batch_index=0),
        wrap(calls, ev.BatchPaused(batch_id=batch_id, requested_by="k"), batch_id, 1),
    )
    await shared_db.project()
    async with shared_db.pool.connection() as conn:
        batch = await queries.get_batch(conn, calls.org, batch_id)
    assert batch is not None
    assert (batch["paused"], batch["status"]) == (True, "queued")
    await shared_db.append(
        wrap(calls, ev.BatchResumed(batch_id=batch_id, requested_by="k"), batch_id, 2)
    )
    await shared_db.project()
    async with shared_db.pool.connection() as conn:
        batch = await queries.get_batch(conn, calls.org, batch_id)
    assert batch is not None
    assert batch["paused"] is False
