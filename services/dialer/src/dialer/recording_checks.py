"""Step 9 of a call's path, where the recording callback may be lost: a recorded call that
ended `completed` is due for listing its recordings at the carrier after the grace, unless its
recording was reported first; what a listing settled is appended as the RecordingReported its
callback would have produced (decided by the pure `lost_recordings`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from calls_events import RecordingReported
from calls_platform.db import Conn
from calls_platform.report_ids import recording_reported_id

from . import dials
from .dials import EVENT_COLUMNS


async def mark_due(conn: Conn, call_id: uuid.UUID, due_at: datetime) -> None:
    """The call's recordings are to be listed at `due_at`: not over an earlier mark, and not
    once the recording has been reported (a report seen since the decision was made, by
    another replica)."""
    await conn.execute(
        "UPDATE dialer.dials SET recordings_due_at = %s WHERE call_id = %s"
        " AND recordings_due_at IS NULL AND recording_reported_at IS NULL",
        (due_at, call_id),
    )


async def note_recording_reported(conn: Conn, call_id: uuid.UUID) -> None:
    """A RecordingReported from the call's recording callback was stored: its recordings need
    not be listed at the carrier (the due mark is cleared, and never set after this)."""
    await conn.execute(
        "UPDATE dialer.dials SET recording_reported_at = coalesce(recording_reported_at, now()),"
        " recordings_due_at = NULL WHERE call_id = %s",
        (call_id,),
    )


@dataclass(frozen=True)
class RecordingsDue:
    """A recorded call whose recordings are to be listed at the carrier."""

    call_id: uuid.UUID
    call_sid: str
    recordings_checks: int


async def recordings_due(conn: Conn, *, limit: int = 50) -> list[RecordingsDue]:
    cur = await conn.execute(
        "SELECT call_id, call_sid, recordings_checks FROM dialer.dials"
        " WHERE recordings_due_at <= now() ORDER BY recordings_due_at LIMIT %s",
        (limit,),
    )
    return [RecordingsDue(**row) for row in await cur.fetchall()]


async def record_recordings(
    conn: Conn,
    call_id: uuid.UUID,
    reports: Sequence[RecordingReported],
    *,
    again_after_seconds: float | None,
) -> int:
    """Append what the carrier's list of a call's recordings settled, each as the
    RecordingReported its callback would have produced, under the callback's event id (the
    one that arrives second is skipped), and count the check: listed again after
    `again_after_seconds`, or (None) never again. Returns how many reports were new."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE dialer.dials SET recordings_checks = recordings_checks + 1,"
            " recordings_due_at = CASE WHEN %(again)s::float8 IS NULL THEN NULL"
            " ELSE now() + make_interval(secs => %(again)s::float8) END"
            " WHERE call_id = %(call_id)s AND recordings_due_at IS NOT NULL"
            f" RETURNING {EVENT_COLUMNS}",
            {"again": again_after_seconds, "call_id": call_id},
        )
        row = await cur.fetchone()
        if row is None or not reports:
            return 0
        recorded = await dials.append_envelopes(
            conn,
            [
                dials.on_call(
                    row, report, recording_reported_id(call_id, report.recording_sid, report.status)
                )
                for report in reports
            ],
        )
    return len(recorded)
