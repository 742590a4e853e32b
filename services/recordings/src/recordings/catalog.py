"""The recordings table (what the carrier reported, what is stored where), and the events each
state change appends in the same commit."""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass, fields
from typing import Final, LiteralString

from calls_events import (
    Envelope,
    Event,
    RecordingDeleted,
    RecordingFailed,
    RecordingReported,
    RecordingStored,
    call_stream,
)
from calls_platform import eventstore
from calls_platform.db import Conn
from calls_platform.metrics import EVENTS_APPENDED

PENDING: Final = "pending"
STORED: Final = "stored"
ABSENT: Final = "absent"
FAILED: Final = "failed"
DELETING: Final = "deleting"
DELETED: Final = "deleted"


@dataclass(frozen=True)
class Recording:
    recording_sid: str
    call_id: uuid.UUID
    organization_id: str
    call_sid: str
    state: str
    recording_url: str | None
    duration_seconds: int | None
    attempts: int
    failure_reason: str | None
    storage_key: str | None
    size_bytes: int | None
    content_type: str | None
    correlation_id: str | None
    reported_event_id: uuid.UUID


_COLUMNS: Final = ", ".join(f.name for f in fields(Recording))


def _initial_state(report: RecordingReported) -> str:
    return {"completed": PENDING, "absent": ABSENT, "failed": FAILED}[report.status]


async def _append(conn: Conn, recording: Recording, event: Event, kind: str) -> None:
    envelope = Envelope.wrap(
        event,
        stream_id=call_stream(recording.call_id),
        organization_id=recording.organization_id,
        correlation_id=recording.correlation_id,
        causation_id=str(recording.reported_event_id),
        # one event of each kind per recording, however often this runs
        event_id=eventstore.deterministic_event_id(kind, recording.recording_sid),
    )
    if await eventstore.append(conn, [envelope]):
        EVENTS_APPENDED.labels(event.TYPE).inc()


async def record_report(
    conn: Conn, envelope: Envelope, report: RecordingReported
) -> tuple[Recording, bool]:
    """Record the carrier's report once; return the recording and whether it is new.

    A recording the carrier says failed is final at once (with its RecordingFailed)."""
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO recordings.recordings (recording_sid, call_id, organization_id,"
            " call_sid, state, recording_url, duration_seconds, channels, failure_reason,"
            " correlation_id, reported_event_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            f" ON CONFLICT (recording_sid) DO NOTHING RETURNING {_COLUMNS}",
            (
                report.recording_sid,
                report.call_id,
                envelope.organization_id,
                report.call_sid,
                _initial_state(report),
                report.recording_url,
                report.duration_seconds,
                report.channels,
                "the carrier could not record the call" if report.status == "failed" else None,
                envelope.correlation_id,
                envelope.event_id,
            ),
        )
        row = await cur.fetchone()
        if row is None:
            existing = await find(conn, report.recording_sid)
            assert existing is not None  # the conflicting row is committed: it is visible
            return existing, False
        recording = Recording(**row)
        if recording.state == FAILED:
            await _append(
                conn,
                recording,
                RecordingFailed(
                    call_id=recording.call_id,
                    recording_sid=recording.recording_sid,
                    reason=recording.failure_reason or "failed",
                    attempts=0,
                ),
                "recording-failed",
            )
    return recording, True


async def find(conn: Conn, recording_sid: str) -> Recording | None:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM recordings.recordings WHERE recording_sid = %s",
        (recording_sid,),
    )
    row = await cur.fetchone()
    return Recording(**row) if row else None


async def find_stored(conn: Conn, organization_id: str, call_id: uuid.UUID) -> Recording | None:
    """The call's stored recording (the newest, should the carrier ever make two), if it is
    this organization's call."""
    return await _newest(conn, organization_id, call_id, SERVED)


# The states of a call's recording that GET serves and that DELETE removes, written into the
# SQL, not passed as a parameter: a prepared statement's generic plan could not prove
# `state = ANY($3)` matches the partial index recordings_call_live (0004_deletable_index.sql)
SERVED: Final = "state = 'stored'"
DELETABLE: Final = "state IN ('stored', 'deleting')"


def newest_query(state_is: LiteralString) -> str:
    """The lookup of a call's newest recording in `state_is` (organization id, call id)."""
    return (
        f"SELECT {_COLUMNS} FROM recordings.recordings"
        f" WHERE organization_id = %s AND call_id = %s AND {state_is}"
        " ORDER BY stored_at DESC LIMIT 1"
    )


async def _newest(
    conn: Conn, organization_id: str, call_id: uuid.UUID, state_is: LiteralString
) -> Recording | None:
    cur = await conn.execute(newest_query(state_is), (organization_id, call_id))
    row = await cur.fetchone()
    return Recording(**row) if row else None


async def mark_stored(
    conn: Conn,
    recording: Recording,
    *,
    storage_key: str,
    size_bytes: int,
    content_type: str,
    attempts: int,
) -> bool:
    """The audio is in storage under `storage_key`: record it, and append RecordingStored."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE recordings.recordings SET state = 'stored', storage_key = %s,"
            " size_bytes = %s, content_type = %s, attempts = attempts + %s, stored_at = now(),"
            " updated_at = now() WHERE recording_sid = %s AND state = 'pending'"
            f" RETURNING {_COLUMNS}",
            (storage_key, size_bytes, content_type, attempts, recording.recording_sid),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        await _append(
            conn,
            Recording(**row),
            RecordingStored(
                call_id=recording.call_id,
                call_sid=recording.call_sid,
                recording_sid=recording.recording_sid,
                storage_key=storage_key,
                size_bytes=size_bytes,
                content_type=content_type,
                duration_seconds=recording.duration_seconds,
            ),
            "recording-stored",
        )
    return True


async def mark_failed(conn: Conn, recording: Recording, *, reason: str, attempts: int) -> bool:
    """The audio could not be stored, for good: record why, and append RecordingFailed."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE recordings.recordings SET state = 'failed', failure_reason = %s,"
            " attempts = attempts + %s, updated_at = now()"
            f" WHERE recording_sid = %s AND state = 'pending' RETURNING {_COLUMNS}",
            (reason, attempts, recording.recording_sid),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        failed = Recording(**row)
        await _append(
            conn,
            failed,
            RecordingFailed(
                call_id=failed.call_id,
                recording_sid=failed.recording_sid,
                reason=reason,
                attempts=failed.attempts,
            ),
            "recording-failed",
        )
    return True


async def find_deletable(conn: Conn, organization_id: str, call_id: uuid.UUID) -> Recording | None:
    """The call's recording that DELETE removes: the stored one, or one whose deletion was cut
    short (`deleting`), if it is this organization's call."""
    return await _newest(conn, organization_id, call_id, DELETABLE)


async def begin_delete(conn: Conn, recording: Recording) -> bool:
    """Stop serving the recording before its audio is removed (stored → deleting; a deletion
    cut short is taken up again). Commit it before touching storage: see 0003_deleting.sql."""
    cur = await conn.execute(
        "UPDATE recordings.recordings SET state = 'deleting', updated_at = now()"
        " WHERE recording_sid = %s AND state IN ('stored', 'deleting') RETURNING recording_sid",
        (recording.recording_sid,),
    )
    return await cur.fetchone() is not None


async def undo_delete(conn: Conn, recording: Recording) -> None:
    """Serve the recording again: storage refused to remove its audio (deleting → stored)."""
    await conn.execute(
        "UPDATE recordings.recordings SET state = 'stored', updated_at = now()"
        " WHERE recording_sid = %s AND state = 'deleting'",
        (recording.recording_sid,),
    )


async def mark_deleted(conn: Conn, recording: Recording, *, requested_by: str) -> bool:
    """Record a deletion whose audio storage has removed (deleting → deleted) and append
    RecordingDeleted, once; False if another request recorded it first."""
    cur = await conn.execute(
        "UPDATE recordings.recordings SET state = 'deleted', updated_at = now()"
        " WHERE recording_sid = %s AND state = 'deleting' RETURNING recording_sid",
        (recording.recording_sid,),
    )
    if await cur.fetchone() is None:
        return False
    await _append(
        conn,
        recording,
        RecordingDeleted(
            call_id=recording.call_id,
            recording_sid=recording.recording_sid,
            requested_by=requested_by,
        ),
        "recording-deleted",
    )
    return True


def _lock_key(recording_sid: str) -> int:
    return zlib.crc32(f"recording:{recording_sid}".encode())


async def try_lock(conn: Conn, recording_sid: str) -> bool:
    """Take the session lock for working on one recording (another replica may hold the same
    report, delivered twice); it goes with the connection if the process dies."""
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (_lock_key(recording_sid),))
    row = await cur.fetchone()
    return bool(row and row["ok"])


async def unlock(conn: Conn, recording_sid: str) -> None:
    await conn.execute("SELECT pg_advisory_unlock(%s)", (_lock_key(recording_sid),))
