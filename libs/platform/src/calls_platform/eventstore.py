"""The event store: append events with optimistic concurrency, read them back in order.

The store doubles as the outbox: events committed here are relayed to RabbitMQ by
`calls_platform.relay`, so appending an event and changing a service's own tables happen in
one PostgreSQL transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

from calls_events import Envelope

from .db import Conn

NOTIFY_CHANNEL: Final = "eventstore_appended"
# Serializes appends so that positions become visible in commit order (see docs/architecture.md).
_APPEND_LOCK_KEY: Final = 0x63616C6C  # "call"

ANY: Final = -1
"""Expected version meaning: append whatever the stream's current version."""
NO_STREAM: Final = 0
"""Expected version meaning: the stream must not exist yet."""

_COLUMNS = (
    "position, event_id, stream_id, stream_version, event_type, event_version,"
    " organization_id, occurred_at, correlation_id, causation_id, data"
)


class ConcurrencyError(Exception):
    """A stream was not at the version the writer expected."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id}: expected version {expected}, found {actual}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


# Under the append lock, one statement reads what an append must know: which of its event ids
# are already stored, the current version of each of its streams, and the head position.
_STATE = """
SELECT
    ARRAY(SELECT event_id FROM eventstore.events WHERE event_id = ANY(%(ids)s)) AS stored,
    (SELECT coalesce(jsonb_object_agg(stream_id, version), '{}'::jsonb) FROM (
        SELECT stream_id, max(stream_version) AS version FROM eventstore.events
        WHERE stream_id = ANY(%(streams)s) GROUP BY stream_id) AS v) AS versions,
    (SELECT coalesce(max(position), 0) FROM eventstore.events) AS head
"""
# Up to this many events go in one pipelined INSERT; more are COPYed (which pipeline mode
# does not allow)
_PIPELINED_MAX: Final = 16


async def append(
    conn: Conn,
    events: Sequence[Envelope],
    *,
    expected_versions: Mapping[str, int] | None = None,
) -> list[Envelope]:
    """Append `events` atomically and return them as recorded (with position and version).

    Events whose `event_id` is already stored are skipped, which makes retried appends of
    deterministic ids (e.g. carrier callbacks) idempotent. `expected_versions` maps a stream
    to the version it must be at (`NO_STREAM`, a number, or `ANY`); a mismatch raises
    ConcurrencyError and nothing is appended.

    Runs in the caller's transaction when there is one, so callers can change their own
    tables in the same commit.

    Appends are serialized by a transaction-level lock held until the commit, so the fewer
    round trips under it, the more appends per second: a small append takes the lock and reads
    the store's state in one round trip, and inserts, notifies (and releases its savepoint) in
    one more, in pipeline mode (it was seven; see docs/benchmarks.md).
    """
    if not events:
        return []
    if len(events) > _PIPELINED_MAX:
        async with conn.transaction():
            recorded = await _lock_and_number(conn, events, expected_versions)
            if recorded:
                await _copy(conn, recorded)
                await _notify(conn, recorded)
        return recorded
    async with conn.pipeline(), conn.transaction():
        recorded = await _lock_and_number(conn, events, expected_versions)
        if recorded:
            async with conn.cursor() as cur:
                await cur.executemany(
                    f"INSERT INTO eventstore.events ({_COLUMNS})"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
                    [_row(e) for e in recorded],
                )
            await _notify(conn, recorded)
    return recorded


async def _lock_and_number(
    conn: Conn, events: Sequence[Envelope], expected_versions: Mapping[str, int] | None
) -> list[Envelope]:
    """Take the append lock, check expected versions, and give each new event its position
    and stream version (none: every event is already stored)."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_APPEND_LOCK_KEY,))
    cur = await conn.execute(
        _STATE,
        {
            "ids": [e.event_id for e in events],
            "streams": sorted({e.stream_id for e in events}),
        },
    )
    state = await cur.fetchone()
    assert state is not None
    stored = set(state["stored"])
    versions: dict[str, int] = dict(state["versions"])
    for stream_id, expected in (expected_versions or {}).items():
        actual = versions.get(stream_id, 0)
        if expected != ANY and expected != actual:
            raise ConcurrencyError(stream_id, expected, actual)
    position = int(state["head"])
    recorded: list[Envelope] = []
    for event in events:
        if event.event_id in stored:
            continue
        position += 1
        version = versions.get(event.stream_id, 0) + 1
        versions[event.stream_id] = version
        recorded.append(event.model_copy(update={"position": position, "stream_version": version}))
    return recorded


async def _notify(conn: Conn, recorded: Sequence[Envelope]) -> None:
    await conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(recorded[-1].position)))


def _row(e: Envelope) -> tuple[Any, ...]:
    return (
        e.position,
        e.event_id,
        e.stream_id,
        e.stream_version,
        e.event_type,
        e.event_version,
        e.organization_id,
        e.occurred_at,
        e.correlation_id,
        e.causation_id,
        json.dumps(e.data),
    )


async def _copy(conn: Conn, recorded: Sequence[Envelope]) -> None:
    async with (
        conn.cursor() as cur,
        cur.copy(f"COPY eventstore.events ({_COLUMNS}) FROM STDIN") as copy,
    ):
        for e in recorded:
            await copy.write_row(_row(e))


def _envelope(row: Mapping[str, Any]) -> Envelope:
    return Envelope(
        event_id=row["event_id"],
        event_type=row["event_type"],
        event_version=row["event_version"],
        stream_id=row["stream_id"],
        organization_id=row["organization_id"],
        occurred_at=row["occurred_at"],
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        position=row["position"],
        stream_version=row["stream_version"],
        data=row["data"],
    )


async def read_all(
    conn: Conn, *, after: int, limit: int = 1000, types: Collection[str] | None = None
) -> list[Envelope]:
    """Events with position > `after`, in order; optionally only the given types."""
    if types is None:
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM eventstore.events WHERE position > %s"
            " ORDER BY position LIMIT %s",
            (after, limit),
        )
    else:
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM eventstore.events"
            " WHERE position > %s AND event_type = ANY(%s) ORDER BY position LIMIT %s",
            (after, list(types), limit),
        )
    return [_envelope(row) for row in await cur.fetchall()]


async def read_stream(conn: Conn, stream_id: str) -> list[Envelope]:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM eventstore.events WHERE stream_id = %s ORDER BY stream_version",
        (stream_id,),
    )
    return [_envelope(row) for row in await cur.fetchall()]


async def head_position(conn: Conn) -> int:
    """The position of the newest committed event (0 when the store is empty)."""
    cur = await conn.execute(
        "SELECT position FROM eventstore.events ORDER BY position DESC LIMIT 1"
    )
    row = await cur.fetchone()
    return int(row["position"]) if row else 0


def deterministic_event_id(*parts: str) -> uuid.UUID:
    """An event id derived from what the event reports, so the same report appends once."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "calls-backend:" + ":".join(parts))
