"""The event store: append events with optimistic concurrency, read them back in commit order.

The store doubles as the outbox: events committed here are relayed to RabbitMQ by
`calls_platform.relay`, so appending an event and changing a service's own tables happen in
one PostgreSQL transaction.

Appends run concurrently: there is no append lock. Positions come from a sequence, so they
are unique but do not commit in order; each row also records the transaction that wrote it,
and readers read in (transaction_id, position) order, only what lies below the oldest
transaction still running (`pg_snapshot_xmin`). Nothing can then commit behind a reader's
checkpoint, the pair (transaction_id, position) of the last event it took. The technique is
Emmett's (event-driven-io/emmett, emmett-postgresql); docs/architecture.md ("Ordering") has
the argument, its pitfalls and its operational limits.

Every statement that touches the `eventstore` schema lives in this module.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple, TypedDict

import psycopg
import pydantic_core
from calls_events import Envelope, Event
from psycopg.pq import TransactionStatus

from .db import Conn, Pool
from .metrics import (
    EVENTSTORE_OLDEST_XACT_AGE,
    EVENTSTORE_READER_BACKLOG,
    EVENTSTORE_READER_LAG_SECONDS,
)

NOTIFY_CHANNEL: Final = "eventstore_appended"
"""Appends no longer NOTIFY: a NOTIFY in a transaction takes a database-wide lock held through
the commit, which serialized every append again. Readers poll; the channel stays for anyone
who wants to wake listeners explicitly (`notify_appended`)."""

ANY: Final = -1
"""Expected version meaning: append whatever the stream's current version."""
NO_STREAM: Final = 0
"""Expected version meaning: the stream must not exist yet."""

# A concurrent append to the same stream (or of the same event id) that commits first makes
# ours violate a unique constraint; it is retried (re-reading the stream) this many times.
_ATTEMPTS: Final = 8

_COLUMNS = (
    "position, event_id, stream_id, stream_version, event_type, event_version,"
    " organization_id, occurred_at, correlation_id, causation_id, data"
)


class Checkpoint(NamedTuple):
    """A reader's place in the store: the (transaction_id, position) of the last event it took.

    Ordered as a pair. A checkpoint on the position alone loses events: a transaction that
    took a smaller position can commit after a reader moved past it (Emmett PR #336)."""

    transaction_id: int
    position: int


START: Final = Checkpoint(0, 0)


class ConcurrencyError(Exception):
    """A stream was not at the version the writer expected."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id}: expected version {expected}, found {actual}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class Events(list[Envelope]):
    """Events read in commit order; `checkpoints[i]` is the checkpoint just past event i (a
    reader that takes only a prefix resumes from there), `checkpoint` the one past the last
    (where the reader started, when nothing was read; for read_organization, the last event
    looked at, whichever organization's)."""

    def __init__(
        self, events: Iterable[Envelope], checkpoints: Sequence[Checkpoint], start: Checkpoint
    ) -> None:
        super().__init__(events)
        self.checkpoints = list(checkpoints)
        self.checkpoint = self.checkpoints[-1] if self.checkpoints else start


# The new events, as a document: one row each, in the order given.
_INPUT_DOCUMENT: Final = """
input AS (
    SELECT * FROM ROWS FROM (jsonb_to_recordset(%(events)s::jsonb) AS (
        event_id uuid, stream_id text, event_type text, event_version int,
        organization_id text, occurred_at timestamptz, correlation_id text,
        causation_id text, data jsonb
    )) WITH ORDINALITY AS i (event_id, stream_id, event_type, event_version, organization_id,
                             occurred_at, correlation_id, causation_id, data, ord)
),
expected AS (
    SELECT key AS stream_id, value::int AS expected FROM jsonb_each_text(%(expected)s::jsonb)
)"""

# One new event on an existing stream, as of the organization and correlation of the event
# that opened it; no row (nothing appended) when the stream does not exist or is another
# organization's. The lookup and the append are one statement: one round trip, where a read
# of the stream and then an append were two (a carrier callback's cost was mostly round trips).
_INPUT_ON_STREAM: Final = """
opener AS (
    SELECT e.organization_id, e.correlation_id FROM eventstore.events e
    WHERE e.stream_id = %(stream_id)s ORDER BY e.stream_version LIMIT 1
),
input AS (
    SELECT %(event_id)s::uuid AS event_id, %(stream_id)s::text AS stream_id,
        %(event_type)s::text AS event_type, %(event_version)s::int AS event_version,
        o.organization_id, %(occurred_at)s::timestamptz AS occurred_at, o.correlation_id,
        %(causation_id)s::text AS causation_id, %(data)s::jsonb AS data, 1::bigint AS ord
    FROM opener o
    WHERE %(organization_id)s::text IS NULL OR o.organization_id = %(organization_id)s::text
),
expected AS (
    SELECT NULL::text AS stream_id, NULL::int AS expected WHERE false
)"""


def _append_statement(input_ctes: str, *, answers: str = "") -> str:
    """One statement, one round trip: skip the event ids already stored, read each stream's
    head, check the expected versions, number the new events and insert them. Nothing is
    inserted when a version is not as expected. Each new row records
      greatest(this transaction's id, its stream predecessor's transaction_id)
    so that a stream's events are in stream_version order in the readers' order too, even when
    the appending transaction took its id (by writing its own tables first) before it read the
    stream: a later transaction_id is safe (the row is read no earlier than that transaction's
    end, and this one ended before it can be), an earlier one would put v2 before v1.

    `input_ctes` defines `input` (the new events, numbered `ord`) and `expected` (stream →
    version it must be at); the statement answers `mismatched` and `inserted`, and `answers`
    (more columns of the final SELECT, each after a comma)."""
    return (
        "WITH"
        + input_ctes
        + """,
streams AS (
    SELECT stream_id FROM input UNION SELECT stream_id FROM expected
),
heads AS (
    SELECT s.stream_id, coalesce(h.stream_version, 0) AS version, h.transaction_id
    FROM streams s LEFT JOIN LATERAL (
        SELECT e.stream_version, e.transaction_id FROM eventstore.events e
        WHERE e.stream_id = s.stream_id ORDER BY e.stream_version DESC LIMIT 1
    ) h ON true
),
mismatched AS (
    SELECT x.stream_id, x.expected, h.version AS actual
    FROM expected x JOIN heads h USING (stream_id)
    WHERE x.expected <> h.version
),
fresh AS (
    SELECT i.*,
        h.version + row_number() OVER (PARTITION BY i.stream_id ORDER BY i.ord)
            AS stream_version,
        greatest(pg_current_xact_id(), h.transaction_id) AS transaction_id
    FROM input i JOIN heads h USING (stream_id)
    -- one index probe per event (a NOT EXISTS could be planned as a scan of the whole store)
    LEFT JOIN LATERAL (
        SELECT true AS stored FROM eventstore.events e WHERE e.event_id = i.event_id LIMIT 1
    ) s ON true
    WHERE s.stored IS NULL AND NOT EXISTS (SELECT 1 FROM mismatched)
),
inserted AS (
    INSERT INTO eventstore.events (transaction_id, event_id, stream_id, stream_version,
        event_type, event_version, organization_id, occurred_at, correlation_id,
        causation_id, data)
    SELECT transaction_id, event_id, stream_id, stream_version, event_type, event_version,
        organization_id, occurred_at, correlation_id, causation_id, data
    FROM fresh ORDER BY ord
    RETURNING event_id, position, stream_version
)
SELECT
    (SELECT coalesce(jsonb_agg(jsonb_build_object(
        'stream_id', stream_id, 'expected', expected, 'actual', actual)), '[]')
     FROM mismatched) AS mismatched,
    (SELECT coalesce(jsonb_agg(jsonb_build_array(event_id, position, stream_version)), '[]')
     FROM inserted) AS inserted
"""
        + answers
    )


_APPEND: Final = _append_statement(_INPUT_DOCUMENT)
# and the stream's organization (None: no such stream, or another organization's) and
# correlation id, which the new event took
_APPEND_ON_STREAM: Final = _append_statement(
    _INPUT_ON_STREAM,
    answers=", (SELECT organization_id FROM input) AS organization_id,"
    " (SELECT correlation_id FROM input) AS correlation_id",
)


def _parameters(
    events: Sequence[Envelope], expected_versions: Mapping[str, int] | None
) -> dict[str, str]:
    """Two JSON documents, serialized at once in Rust (pydantic_core): adapting ten arrays
    parameter by parameter cost more CPU than the rest of a request."""
    rows = [
        {
            "event_id": e.event_id,
            "stream_id": e.stream_id,
            "event_type": e.event_type,
            "event_version": e.event_version,
            "organization_id": e.organization_id,
            "occurred_at": e.occurred_at,
            "correlation_id": e.correlation_id,
            "causation_id": e.causation_id,
            "data": e.data,
        }
        for e in events
    ]
    expected = {s: v for s, v in (expected_versions or {}).items() if v != ANY}
    return {
        "events": pydantic_core.to_json(rows).decode(),
        "expected": pydantic_core.to_json(expected).decode(),
    }


async def _execute_appending(
    conn: Conn, statement: str, parameters: Mapping[str, Any]
) -> psycopg.AsyncCursor[Any]:
    """Run an appending statement as its own transaction when the connection has none (no
    BEGIN, no COMMIT: one round trip, the shortest time a transaction id is held), else in a
    savepoint pipelined with it, so that a failure does not abort the caller's transaction."""
    if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
        return await conn.execute(statement, parameters)
    async with conn.pipeline(), conn.transaction():
        return await conn.execute(statement, parameters)


class NewStreamEvent(TypedDict):
    """An event in the form the store keeps it (ids as strings, `data` in its JSON form), for
    appends of many events built in bulk without an Envelope each (`append_new_streams`)."""

    event_id: str
    event_type: str
    event_version: int
    stream_id: str
    organization_id: str
    occurred_at: datetime
    correlation_id: str | None
    causation_id: str | None
    data: dict[str, Any]


def new_stream_event(envelope: Envelope) -> NewStreamEvent:
    """`envelope` in the form append_new_streams takes."""
    return {
        "event_id": str(envelope.event_id),
        "event_type": envelope.event_type,
        "event_version": envelope.event_version,
        "stream_id": envelope.stream_id,
        "organization_id": envelope.organization_id,
        "occurred_at": envelope.occurred_at,
        "correlation_id": envelope.correlation_id,
        "causation_id": envelope.causation_id,
        "data": envelope.data,
    }


# Every event opens a stream of its own: nothing to look up, one row each at version 1. The
# constraints keep the guarantees append() checks: an existing stream violates
# (stream_id, stream_version), a stored event id violates event_id's uniqueness.
_APPEND_NEW_STREAMS: Final = """
INSERT INTO eventstore.events (event_id, stream_id, stream_version, event_type, event_version,
    organization_id, occurred_at, correlation_id, causation_id, data)
SELECT event_id, stream_id, 1, event_type, event_version, organization_id, occurred_at,
    correlation_id, causation_id, data
FROM ROWS FROM (jsonb_to_recordset(%(events)s::jsonb) AS (
    event_id uuid, stream_id text, event_type text, event_version int,
    organization_id text, occurred_at timestamptz, correlation_id text,
    causation_id text, data jsonb
)) WITH ORDINALITY AS i (event_id, stream_id, event_type, event_version, organization_id,
                         occurred_at, correlation_id, causation_id, data, ord)
ORDER BY ord
"""


async def append_new_streams(conn: Conn, events: Sequence[NewStreamEvent]) -> int:
    """Append `events`, each the first of a new stream, atomically; return how many.

    For many events at once (a bulk load: the tests and benchmarks fill the store with it;
    batches used it for their 10,000 CallRequested until a batch became one event): one
    statement, no per-event lookups and nothing read back, so its cost is the insert's.
    Unlike append() it does not skip stored event ids: the ids must be new (a stored one
    raises UniqueViolation, and nothing is appended), and a stream that exists raises
    ConcurrencyError. Runs in the caller's transaction when there is one (keep it short: see
    append())."""
    if not events:
        return 0
    document = pydantic_core.to_json(events).decode()
    try:
        cur = await _execute_appending(conn, _APPEND_NEW_STREAMS, {"events": document})
    except psycopg.errors.UniqueViolation as exc:
        if exc.diag.constraint_name == "events_stream_id_stream_version_key":
            raise ConcurrencyError(exc.diag.message_detail or "?", NO_STREAM, 1) from exc
        raise
    return cur.rowcount


async def append(
    conn: Conn,
    events: Sequence[Envelope],
    *,
    expected_versions: Mapping[str, int] | None = None,
) -> list[Envelope]:
    """Append `events` atomically and return the new ones as recorded (position, version).

    Events whose `event_id` is already stored are skipped, which makes retried appends of
    deterministic ids (e.g. carrier callbacks) idempotent. `expected_versions` maps a stream
    to the version it must be at (`NO_STREAM`, a number, or `ANY`); a mismatch raises
    ConcurrencyError and nothing is appended. Two appends racing for a stream's next version
    meet at the unique (stream_id, stream_version) constraint: the loser re-reads the stream
    and tries again (its expected versions, if any, are checked again and may then fail).

    Runs in the caller's transaction when there is one (in a savepoint, so a retry does not
    abort it; pipelined with SAVEPOINT and RELEASE), so callers can change their own tables in
    the same commit; keep that transaction short: an open writing transaction holds every
    reader back (see module doc). Outside a transaction the one statement is its own: one
    round trip, and the shortest time a transaction id is held.
    """
    if not events:
        return []
    row = await _run_append(conn, _APPEND, _parameters(events, expected_versions))
    recorded = {uuid.UUID(i): (position, version) for i, position, version in row["inserted"]}
    return [
        e.model_copy(update={"position": at[0], "stream_version": at[1]})
        for e in events
        if (at := recorded.get(e.event_id)) is not None
    ]


async def _run_append(conn: Conn, statement: str, parameters: Mapping[str, Any]) -> Any:
    """Run an appending statement, again after losing a race for a stream's next version (the
    unique constraint); its row, once no expected version mismatched."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            cur = await _execute_appending(conn, statement, parameters)
            row = await cur.fetchone()
        except psycopg.errors.UniqueViolation as exc:
            if attempt == _ATTEMPTS:
                stream = exc.diag.message_detail or "?"
                raise ConcurrencyError(stream, ANY, -1) from exc
            continue
        assert row is not None
        if row["mismatched"]:
            first = row["mismatched"][0]
            raise ConcurrencyError(first["stream_id"], first["expected"], first["actual"])
        return row
    raise AssertionError("unreachable")


class Continued(NamedTuple):
    """What continue_stream did: the event as recorded on its stream (the stream's
    organization and correlation; position and version None when it was stored already), and
    whether it is new."""

    envelope: Envelope
    appended: bool


async def continue_stream(
    conn: Conn,
    stream_id: str,
    event: Event,
    *,
    event_id: uuid.UUID,
    organization_id: str | None,
    causation_id: str | None = None,
) -> Continued | None:
    """Append `event` to an existing stream, with the organization and correlation id of the
    event that opened it, in one statement (one round trip: no read of the stream first).
    None, and nothing appended, when the stream does not exist or, given `organization_id`,
    belongs to another organization. An event id already stored is not appended again
    (`appended` False), as in append(). Runs in the caller's transaction when there is one."""
    data = event.model_dump(mode="json")
    occurred_at = datetime.now(UTC)
    parameters = {
        "stream_id": stream_id,
        "event_id": str(event_id),
        "event_type": event.TYPE,
        "event_version": event.VERSION,
        "occurred_at": occurred_at,
        "causation_id": causation_id,
        "data": pydantic_core.to_json(data).decode(),
        "organization_id": organization_id,
    }
    row = await _run_append(conn, _APPEND_ON_STREAM, parameters)
    if row["organization_id"] is None:
        return None
    [inserted] = row["inserted"] or [[None, None, None]]
    recorded = Envelope(
        event_id=event_id,
        event_type=event.TYPE,
        event_version=event.VERSION,
        stream_id=stream_id,
        organization_id=row["organization_id"],
        occurred_at=occurred_at,
        correlation_id=row["correlation_id"],
        causation_id=causation_id,
        position=inserted[1],
        stream_version=inserted[2],
        data=data,
    )
    return Continued(recorded, appended=inserted[0] is not None)


async def notify_appended(conn: Conn) -> None:
    """Wake `AppendListener`s now (outside any appending transaction: see NOTIFY_CHANNEL)."""
    await conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))


def _envelope(row: Mapping[str, Any]) -> Envelope:
    # validated (pydantic_core: faster than model_construct's Python, which was measured)
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


def _checkpoint(after: Checkpoint | int) -> Checkpoint:
    # a bare position n is (0, n): where a checkpoint taken before migration 0002 stood
    return after if isinstance(after, Checkpoint) else Checkpoint(0, after)


# The events of one transaction after a position in it.
_IN_TRANSACTION: Final = "transaction_id = %(tx)s::text::xid8 AND position > %(position)s"

# Only below the oldest transaction still running: anything that commits later has a larger
# transaction_id than what is read now, so it sorts after the reader's checkpoint.
_READABLE: Final = (
    "(transaction_id, position) > (%(tx)s::text::xid8, %(position)s)"
    " AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())"
)


async def read_all(
    conn: Conn,
    *,
    after: Checkpoint | int,
    limit: int = 1000,
    types: Collection[str] | None = None,
    whole_transactions: bool = False,
) -> Events:
    """Committed events after the checkpoint `after`, in commit order (transaction_id,
    position), optionally only the given types; `.checkpoint` is the last one's.

    Returns only what no running transaction can still precede: an open writing transaction
    anywhere in the cluster holds back what committed after it began.

    `whole_transactions`: never end inside a transaction's events (the limit is passed by what
    the last transaction has left), so a reader that applies each read in one transaction of
    its own shows what one append wrote all at once or not at all (a batch and all its calls).
    Events migrated from before transaction ids (transaction_id 0) count one by one."""
    cp = _checkpoint(after)
    rows = await _read_rows(
        conn, _READABLE, {"tx": str(cp.transaction_id), "position": cp.position}, types, limit
    )
    if whole_transactions and len(rows) == limit and rows[-1]["tx"] != "0":
        # the rest of the last transaction: below the snapshot's xmin, so it has ended
        last = {"tx": rows[-1]["tx"], "position": rows[-1]["position"]}
        rows += await _read_rows(conn, _IN_TRANSACTION, last, types, None)
    if not rows:
        return Events([], [], cp)
    return Events(
        (_envelope(r) for r in rows),
        [Checkpoint(int(r["tx"]), r["position"]) for r in rows],
        cp,
    )


# The next `limit` readable events in commit order, as read_all reads them (ORDER BY … LIMIT on
# the read-order index, whatever the organization's share of the store), of which only the
# organization's are returned whole; the last one looked at, whoever's, is where the next
# window starts. Filtering the scan itself by organization let PostgreSQL plan, from the start
# of the store, a sequential scan and a sort of the whole table for every page.
_ORGANIZATION_WINDOW: Final = f"""
WITH window_ AS MATERIALIZED (
    SELECT position, transaction_id, organization_id FROM eventstore.events
    WHERE {_READABLE} ORDER BY transaction_id, position LIMIT %(limit)s
),
edge AS (
    SELECT transaction_id::text AS end_tx, position AS end_position,
        (SELECT count(*) FROM window_) AS looked_at
    FROM window_ ORDER BY transaction_id DESC, position DESC LIMIT 1
)
SELECT edge.*, e.*
FROM edge LEFT JOIN LATERAL (
    SELECT {", ".join(f"e.{c.strip()}" for c in _COLUMNS.split(","))},
        e.transaction_id::text AS tx, e.transaction_id AS txid
    FROM window_ w JOIN eventstore.events e USING (position)
    WHERE w.organization_id = %(organization_id)s
) e ON true
ORDER BY e.txid, e.position
"""


class Window(NamedTuple):
    """What read_organization looked at: `events`, the organization's among them (their
    `.checkpoint` is the last event looked at, whoever's: where the next window starts), and
    whether the window was full (more may be readable at once)."""

    events: Events
    full: bool


async def read_organization(
    conn: Conn, organization_id: str, *, after: Checkpoint | int, limit: int = 1000
) -> Window:
    """The next `limit` committed events after `after` in commit order, of which the
    organization's are built into envelopes (a reader of one tenant builds none of another's,
    and PostgreSQL reads no more of the store than read_all would)."""
    cp = _checkpoint(after)
    cur = await conn.execute(
        _ORGANIZATION_WINDOW,
        {
            "tx": str(cp.transaction_id),
            "position": cp.position,
            "organization_id": organization_id,
            "limit": limit,
        },
    )
    rows = await cur.fetchall()
    if not rows:  # nothing readable after `after`
        return Window(Events([], [], cp), full=False)
    found = [row for row in rows if row["event_id"] is not None]
    events = Events(
        (_envelope(r) for r in found), [Checkpoint(int(r["tx"]), r["position"]) for r in found], cp
    )
    events.checkpoint = Checkpoint(int(rows[0]["end_tx"]), rows[0]["end_position"])
    return Window(events, full=rows[0]["looked_at"] == limit)


async def _read_rows(
    conn: Conn,
    where: str,
    parameters: dict[str, Any],
    types: Collection[str] | None,
    limit: int | None,
) -> list[Any]:
    """Event rows matching `where`, of the given types, in commit order (`limit` None: all)."""
    if types is not None:
        where += " AND event_type = ANY(%(types)s)"
        parameters["types"] = list(types)
    cur = await conn.execute(
        f"SELECT {_COLUMNS}, transaction_id::text AS tx FROM eventstore.events WHERE {where}"
        " ORDER BY transaction_id, position LIMIT %(limit)s",  # LIMIT NULL: no limit
        {**parameters, "limit": limit},
    )
    return await cur.fetchall()


async def read_stream(conn: Conn, stream_id: str) -> list[Envelope]:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM eventstore.events WHERE stream_id = %s ORDER BY stream_version",
        (stream_id,),
    )
    return [_envelope(row) for row in await cur.fetchall()]


async def head(conn: Conn) -> Checkpoint:
    """The last committed event in commit order (START when the store is empty): a reader
    whose checkpoint is at or past it has taken everything committed before this call."""
    cur = await conn.execute(
        "SELECT transaction_id::text AS tx, position FROM eventstore.events"
        " ORDER BY transaction_id DESC, position DESC LIMIT 1"
    )
    row = await cur.fetchone()
    return Checkpoint(int(row["tx"]), row["position"]) if row else START


async def readable_head(conn: Conn) -> Checkpoint:
    """The last event every reader can read now (START when there is none): committed, and
    below the oldest transaction still running, so nothing can commit before it any more."""
    cur = await conn.execute(
        "SELECT transaction_id::text AS tx, position FROM eventstore.events"
        " WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())"
        " ORDER BY transaction_id DESC, position DESC LIMIT 1"
    )
    row = await cur.fetchone()
    return Checkpoint(int(row["tx"]), row["position"]) if row else START


async def head_position(conn: Conn) -> int:
    """The largest position stored (0 when empty). Positions are unique, not commit order:
    this is a size, not a place to read from (use `head`)."""
    cur = await conn.execute(
        "SELECT position FROM eventstore.events ORDER BY position DESC LIMIT 1"
    )
    row = await cur.fetchone()
    return int(row["position"]) if row else 0


async def wait_readable(
    conn: Conn, target: Checkpoint | None = None, *, seconds: float = 60.0
) -> bool:
    """Wait (up to `seconds`) until `target` (default: the head now) can be read:
    until every transaction that began before it committed has ended. False on timeout.

    For whoever must read what was committed before it asked (tests, a rebuild), on a
    cluster where other transactions come and go."""
    target = target or await head(conn)
    deadline = time.monotonic() + seconds
    while True:
        cur = await conn.execute(
            "SELECT pg_snapshot_xmin(pg_current_snapshot()) > %s::text::xid8 AS ok",
            (str(target.transaction_id),),
        )
        row = await cur.fetchone()
        if row and row["ok"]:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.005)


class Lag(NamedTuple):
    """How far a reader is behind: events committed after its checkpoint (counted up to a
    cap), and the age in seconds of the oldest of them (0 when there are none)."""

    events: int
    seconds: float


# ORDER BY, which the count does not need, keeps the read-order index in every plan: without
# it a plan made before the table had statistics, or the generic plan PostgreSQL caches for a
# prepared statement, was a sequential scan of the whole store, once a second per reader.
_LAG: Final = (
    "SELECT (SELECT count(*) FROM (SELECT 1 FROM eventstore.events"
    "   WHERE (transaction_id, position) > (%(tx)s::text::xid8, %(position)s)"
    "   ORDER BY transaction_id, position LIMIT %(cap)s) AS behind) AS events,"
    " (SELECT extract(epoch FROM clock_timestamp() - occurred_at) FROM eventstore.events"
    "   WHERE (transaction_id, position) > (%(tx)s::text::xid8, %(position)s)"
    "   ORDER BY transaction_id, position LIMIT 1) AS seconds"
)


async def lag(conn: Conn, after: Checkpoint | int, *, cap: int = 100_000) -> Lag:
    """A reader's lag, counting also what it cannot read yet (behind a running transaction)."""
    cp = _checkpoint(after)
    cur = await conn.execute(
        _LAG, {"tx": str(cp.transaction_id), "position": cp.position, "cap": cap}
    )
    row = await cur.fetchone()
    assert row is not None
    return Lag(int(row["events"]), max(0.0, float(row["seconds"] or 0.0)))


async def oldest_transaction_age(conn: Conn) -> float:
    """Seconds the oldest transaction holding a transaction id (a writer, anywhere in the
    cluster) has been open: what holds every reader back. Needs pg_monitor (or superuser) to
    see other users' sessions."""
    cur = await conn.execute(
        "SELECT coalesce(extract(epoch FROM max(clock_timestamp() - xact_start)), 0) AS age"
        " FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
    )
    row = await cur.fetchone()
    return float(row["age"]) if row else 0.0


async def observe_lag(pool: Pool, reader: str, checkpoint: Checkpoint) -> int:
    """Refresh the lag gauges of `reader` (eventstore_reader_lag_seconds,
    eventstore_reader_backlog_events) and eventstore_oldest_xact_age_seconds; return the
    reader's backlog in events."""
    async with pool.connection() as conn:
        behind = await lag(conn, checkpoint)
        oldest = await oldest_transaction_age(conn)
    EVENTSTORE_READER_BACKLOG.labels(reader).set(behind.events)
    EVENTSTORE_READER_LAG_SECONDS.labels(reader).set(behind.seconds)
    EVENTSTORE_OLDEST_XACT_AGE.set(oldest)
    return behind.events


async def load_checkpoint(conn: Conn, name: str, *, for_update: bool = False) -> Checkpoint:
    """The checkpoint of an event-store subscriber (eventstore.checkpoints), START if none."""
    cur = await conn.execute(
        "SELECT transaction_id::text AS tx, position FROM eventstore.checkpoints WHERE name = %s"
        + (" FOR UPDATE" if for_update else ""),
        (name,),
    )
    row = await cur.fetchone()
    return Checkpoint(int(row["tx"]), row["position"]) if row else START


async def save_checkpoint(conn: Conn, name: str, checkpoint: Checkpoint) -> None:
    await conn.execute(
        "INSERT INTO eventstore.checkpoints (name, transaction_id, position)"
        " VALUES (%s, %s::text::xid8, %s) ON CONFLICT (name) DO UPDATE"
        " SET transaction_id = excluded.transaction_id, position = excluded.position",
        (name, str(checkpoint.transaction_id), checkpoint.position),
    )


def deterministic_event_id(*parts: str) -> uuid.UUID:
    """An event id derived from what the event reports, so the same report appends once."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "calls-backend:" + ":".join(parts))
