"""Migrating a running system to commit-ordered reads (event store 0002, call log 0004): a
store written the old way, with the relay's and the projector's checkpoints somewhere in it,
is migrated; each consumer then continues exactly where it was, nothing skipped, nothing
taken twice, and the read models equal a rebuild."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

import pytest
from call_log.projector import Projector, apply_events, rebuild
from calls_events import CallInitiated, CallRequested, CallStatusReported, Envelope, call_stream
from calls_platform import eventstore
from calls_platform.db import Conn, Pool, open_pool
from calls_platform.migrate import apply_migrations, migrate_event_store
from calls_platform.relay import CHECKPOINT as RELAY
from calls_testing.plugin import DatabaseFactory

pytestmark = pytest.mark.integration

ORG = "org_migrated"
# the schemas as they were before commit-ordered reads
BEFORE = {
    "eventstore": ("calls_platform", "migrations/eventstore", ["0001_events.sql"]),
    "call_log": (
        "call_log",
        "migrations",
        # and 0005 (campaign columns, independent of 0004), which today's projector writes
        [
            "0001_calls.sql",
            "0002_history_at_scale.sql",
            "0003_reference_vocabulary.sql",
            "0005_campaigns.sql",
        ],
    ),
}


async def apply_only(conn: Conn, schema: str) -> None:
    package, directory, names = BEFORE[schema]
    await conn.execute(f"CREATE SCHEMA {schema}")
    await conn.execute(
        f"CREATE TABLE {schema}.schema_migrations"
        " (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for name in names:
        path = files(package).joinpath(directory).joinpath(name)
        if not path.is_file():  # a migration another branch adds, not here yet
            continue
        await conn.execute(path.read_text().encode())
        await conn.execute(f"INSERT INTO {schema}.schema_migrations (name) VALUES (%s)", (name,))


def history(calls: int) -> list[Envelope]:
    events = []
    for n in range(calls):
        call_id = uuid.uuid4()
        stream = call_stream(call_id)
        for event in (
            CallRequested(
                call_id=call_id,
                to_number=f"+1555000{n:04d}",
                from_number="+15550009999",
                requested_by="t",
            ),
            CallInitiated(call_id=call_id, call_sid=f"CA{call_id.hex}"),
            CallStatusReported(
                call_id=call_id,
                call_sid=f"CA{call_id.hex}",
                carrier_status="busy",
                sequence_number=1,
                reported_at=datetime.now(UTC),
            ),
        ):
            events.append(Envelope.wrap(event, stream_id=stream, organization_id=ORG))
    return events


async def append_the_old_way(conn: Conn, events: list[Envelope]) -> list[Envelope]:
    """What append() did before 0002: positions head+1, … under the append lock."""
    recorded = []
    versions: dict[str, int] = {}
    for position, e in enumerate(events, start=1):
        versions[e.stream_id] = versions.get(e.stream_id, 0) + 1
        e = e.model_copy(update={"position": position, "stream_version": versions[e.stream_id]})
        await conn.execute(
            "INSERT INTO eventstore.events (position, event_id, stream_id, stream_version,"
            " event_type, event_version, organization_id, occurred_at, data)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
            (
                e.position,
                e.event_id,
                e.stream_id,
                e.stream_version,
                e.event_type,
                e.event_version,
                e.organization_id,
                e.occurred_at,
                json.dumps(e.data),
            ),
        )
        recorded.append(e)
    return recorded


@pytest.fixture
async def pool(database_factory: DatabaseFactory) -> AsyncIterator[Pool]:
    pool = await open_pool(database_factory("migration"), name="test", max_size=4)
    await pool.wait()
    yield pool
    await pool.close()


async def test_every_consumer_continues_where_it_was_after_the_migration(pool: Pool) -> None:
    async with pool.connection() as conn:
        await apply_only(conn, "eventstore")
        await apply_only(conn, "call_log")
        old = await append_the_old_way(conn, history(4))  # positions 1..12
        # the relay had published up to 7, the projector had applied up to 5
        await conn.execute(
            "INSERT INTO eventstore.checkpoints (name, position) VALUES (%s, 7)", (RELAY,)
        )
        async with conn.transaction():
            await apply_events(conn, old[:5])
            await conn.execute("UPDATE call_log.checkpoints SET position = 5")

        assert await migrate_event_store(conn) == ["0002_commit_order.sql"]
        applied = await apply_migrations(conn, "call_log", "call_log", "migrations")
        assert "0004_checkpoint_transaction.sql" in applied

        new = await eventstore.append(conn, history(2))  # appended by the new code
        assert [e.position for e in new] == list(range(13, 19))  # the sequence goes on
        assert await eventstore.wait_readable(conn)

        # the relay: from its checkpoint (0, 7), the old events after 7, then the new ones
        relay_from = await eventstore.load_checkpoint(conn, RELAY)
        assert relay_from == (0, 7)
        relayed = await eventstore.read_all(conn, after=relay_from)
        assert [e.event_id for e in relayed] == [e.event_id for e in old[7:] + new]

    # the projector: from (0, 5), everything after 5 once; the read models equal a rebuild
    projector = Projector(pool)
    applied_events = 0
    while n := await projector.step():
        applied_events += n
    assert applied_events == len(old) - 5 + len(new)
    async with pool.connection() as conn:
        projected = await models(conn)
    await rebuild(pool)
    async with pool.connection() as conn:
        assert await models(conn) == projected
    assert len(projected["calls"]) == 6
    assert sum(row["calls"] for row in projected["call_counts"]) == 6


async def models(conn: Conn) -> dict[str, list[dict[str, Any]]]:
    cur = await conn.execute("SELECT * FROM call_log.calls ORDER BY call_id")
    calls = await cur.fetchall()
    cur = await conn.execute(
        "SELECT * FROM call_log.call_counts WHERE calls <> 0 ORDER BY 1, 2, 3, 4"
    )
    return {"calls": calls, "call_counts": await cur.fetchall()}
