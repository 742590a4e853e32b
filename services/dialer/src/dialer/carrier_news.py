"""Step 6 of a call's path: the carrier's news of a placed call, from its status callbacks
or from asking it (the stale-call watchdog, the canceler). What the dialer remembers never
moves backwards and a terminal status is final (`statuses.advances`); a call that ended frees
its concurrency slot and may have its retry requested; a recorded call that ended `completed`
becomes due for listing its recordings (`recording_checks`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from calls_events import CallStatusReported
from calls_platform import eventstore
from calls_platform.db import Conn

from . import campaign_store, dial_queue, dials, lost_recordings, outcomes, recording_checks
from .carrier import CarrierCall
from .dials import EVENT_COLUMNS, WORK_CHANNEL
from .statuses import KNOWN, TERMINAL, advances


def news_after(reported: str) -> list[str]:
    """The known statuses after which `reported` is news (`statuses.advances`), for SQL."""
    return sorted(known for known in KNOWN if advances(known, reported))


async def note_carrier_status(
    conn: Conn,
    call_id: uuid.UUID,
    status: str,
    *,
    reported_at: datetime | None = None,
    recording_grace_seconds: float = lost_recordings.RECORDING_GRACE_SECONDS,
) -> None:
    """Remember the carrier's latest news of a call: never backwards, a terminal status is
    final (callbacks arrive late, twice or out of order). One statement: this runs for every
    callback, on the queue that also brings new calls. A recorded call that this learns ended
    `completed` (at `reported_at`, now if unknown) becomes due for listing its recordings after
    the grace, unless its recording was reported first (a second statement, once per call)."""
    cur = await conn.execute(
        "UPDATE dialer.dials SET carrier_status = %(status)s, carrier_news_at = now()"
        " WHERE call_id = %(call_id)s"
        " AND (carrier_status IS NULL OR carrier_status = ANY(%(news_after)s))"
        " RETURNING record, recording_reported_at IS NOT NULL AS recording_reported",
        {"status": status, "call_id": call_id, "news_after": news_after(status)},
    )
    row = await cur.fetchone()
    if row is None:
        return  # not news
    outcomes.count_if_ended(status)
    now = datetime.now(UTC)
    due_at = lost_recordings.recordings_due_at(
        status=status,
        record=row["record"],
        recording_reported=row["recording_reported"],
        ended_at=min(reported_at, now) if reported_at is not None else now,
        grace_seconds=recording_grace_seconds,
    )
    if due_at is not None:
        await recording_checks.mark_due(conn, call_id, due_at)


async def note_call_ended(
    conn: Conn, call_id: uuid.UUID, *, answered_by: str | None, now: datetime | None = None
) -> None:
    """A call ended at the carrier: its concurrency slot is free (the dial loop is woken), and
    its next attempt is requested if its retry policy says so."""
    follow_up = await campaign_store.schedule_retry(
        conn, call_id, answered_by=answered_by, now=now or datetime.now(UTC)
    )
    await dial_queue.enqueue_many(conn, follow_up)
    await dials.notify(conn, WORK_CHANNEL)


def reported_at(found: CarrierCall, now: datetime) -> datetime:
    """When a status learned by asking happened: a call that has ended, when the carrier says
    it ended (so the call log's end_time is the call's, not when we found out); otherwise, or
    if the carrier's clock is ahead of ours, now."""
    if found.status in TERMINAL and found.end_time is not None:
        return min(found.end_time, now)
    return now


async def note_asked(conn: Conn, call_id: uuid.UUID) -> None:
    """The carrier was asked about a placed call and told nothing usable (it has no call of
    that SID, or a status we do not know): it is not asked again before its next due time."""
    await conn.execute(
        "UPDATE dialer.dials SET carrier_news_at = now() WHERE call_id = %s", (call_id,)
    )


async def record_carrier_answer(
    conn: Conn,
    call_id: uuid.UUID,
    found: CarrierCall,
    *,
    recording_grace_seconds: float = lost_recordings.RECORDING_GRACE_SECONDS,
) -> bool:
    """Record what the carrier said when asked about a placed call (fetched, or the answer
    to a cancel). News is appended as the CallStatusReported a callback would have produced,
    marked `source: reconciliation`, once per status (deterministic id), `reported_at` the
    carrier's end time for a call that ended; what is not news (the same status, or an older
    one than already known) only notes that the carrier was asked. A recorded call found
    `completed` this way has its recordings listed once the grace has passed since it ended,
    unless its recording was reported by then (its recording callback was most likely lost
    too). Returns whether a report was appended."""
    async with conn.transaction():
        cur = await conn.execute(
            f"SELECT {EVENT_COLUMNS}, carrier_status, record, recording_reported_at"
            " FROM dialer.dials WHERE call_id = %s FOR UPDATE",
            (call_id,),
        )
        row = await cur.fetchone()
        if row is None or row["carrier_status"] in TERMINAL or found.status not in KNOWN:
            return False
        news = advances(row["carrier_status"], found.status)
        now = datetime.now(UTC)
        due_at = (
            lost_recordings.recordings_due_at(
                status=found.status,
                record=row["record"],
                recording_reported=row["recording_reported_at"] is not None,
                ended_at=reported_at(found, now),
                grace_seconds=recording_grace_seconds,
            )
            if news
            else None
        )
        await conn.execute(
            "UPDATE dialer.dials SET carrier_status = %s, carrier_news_at = now(),"
            " recordings_due_at = coalesce(recordings_due_at, %s) WHERE call_id = %s",
            (found.status if news else row["carrier_status"], due_at, call_id),
        )
        if not news:
            return False
        outcomes.count_if_ended(found.status)
        report = CallStatusReported(
            call_id=call_id,
            call_sid=found.sid,
            carrier_status=found.status,
            duration_seconds=found.duration_seconds,
            answered_by=found.answered_by,
            reported_at=reported_at(found, now),
            source="reconciliation",
        )
        event_id = eventstore.deterministic_event_id("reconciled", str(call_id), found.status)
        await dials.append_envelopes(conn, [dials.on_call(row, report, event_id)])
        if found.status in TERMINAL:  # settled by asking: its slot frees, a retry may follow
            await note_call_ended(conn, call_id, answered_by=found.answered_by)
    return True
