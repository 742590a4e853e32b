"""The dialer's table of dials, and the events each state change appends in the same commit."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from calls_events import (
    CallCanceled,
    CallFailed,
    CallInitiated,
    CallRequested,
    CallStatusReported,
    Envelope,
    Event,
    RecordingReported,
    call_stream,
)
from calls_platform import eventstore
from calls_platform.db import Conn
from calls_platform.metrics import EVENTS_APPENDED
from calls_platform.report_ids import recording_reported_id
from psycopg.types.json import Jsonb

from . import campaign_store, lost_recordings, outcomes
from .carrier import CarrierCall
from .statuses import KNOWN, PROGRESS, TERMINAL, advances, rank

WORK_CHANNEL: Final = "dialer_work"
# notified when a batch is canceled: its placed calls may need canceling at the carrier
CANCEL_CHANNEL: Final = "dialer_cancel"


@dataclass(frozen=True)
class Dial:
    call_id: uuid.UUID
    organization_id: str
    to_number: str
    from_number: str
    record: bool
    attempts: int
    correlation_id: str | None
    requested_event_id: uuid.UUID
    dial_started_at: datetime | None
    batch_id: str | None
    redialed: bool
    # the CallRequested data of a call with campaign rules (None: it has none)
    request: dict[str, Any] | None = None

    @property
    def variables(self) -> dict[str, str]:
        return dict((self.request or {}).get("variables") or {})


_DIAL_COLUMNS: Final = (
    "call_id, organization_id, to_number, from_number, record, attempts, correlation_id,"
    " requested_event_id, dial_started_at, batch_id, redialed, request"
)


def _count_appended(recorded: Sequence[Envelope]) -> None:
    """events_appended_total, as every service that appends keeps it (repeats not counted)."""
    for envelope in recorded:
        EVENTS_APPENDED.labels(envelope.event_type).inc()


def lane_of(organization_id: str, batch_id: str | None) -> str:
    return f"batch:{batch_id}" if batch_id else f"single:{organization_id}"


async def _append(conn: Conn, dial: Dial | dict[str, Any], event: Event, kind: str) -> None:
    await _append_many(conn, [(dial, event)], kind)


def _on_call(row: Mapping[str, Any], event: Event, event_id: uuid.UUID) -> Envelope:
    """`event` on the dial's call stream, in the context of the request that created it."""
    return Envelope.wrap(
        event,
        stream_id=call_stream(row["call_id"]),
        organization_id=row["organization_id"],
        correlation_id=row["correlation_id"],
        causation_id=str(row["requested_event_id"]),
        event_id=event_id,
    )


async def _append_many(
    conn: Conn, changes: Sequence[tuple[Dial | dict[str, Any], Event]], kind: str
) -> None:
    envelopes = []
    for dial, event in changes:
        row = dial if isinstance(dial, dict) else dial.__dict__
        # one event of each kind per call, however often this runs
        envelopes.append(
            _on_call(row, event, eventstore.deterministic_event_id(kind, str(row["call_id"])))
        )
    _count_appended(await eventstore.append(conn, envelopes))


def _rules(request: CallRequested) -> Jsonb | None:
    """What the dialer keeps of a request with campaign rules (variables, schedule, retry):
    the whole request, which a retry is made from. None for a plain call."""
    if not (request.variables or request.schedule or request.retry):
        return None
    return Jsonb(request.model_dump(mode="json"))


async def enqueue(conn: Conn, envelope: Envelope, request: CallRequested) -> bool:
    """Record a requested call as pending (once); a call of a canceled batch ends canceled."""
    return await enqueue_many(conn, [(envelope, request)]) == 1


async def enqueue_many(conn: Conn, requests: Sequence[tuple[Envelope, CallRequested]]) -> int:
    """Record requested calls in one transaction (a 10,000-call batch arrives as 10,000
    messages: taking them in bulk keeps a single call from waiting behind them). Each call is
    recorded once; calls of a canceled batch end canceled. Returns how many were new."""
    if not requests:
        return 0
    async with conn.transaction():
        batch_ids = sorted({r.batch_id for _, r in requests if r.batch_id})
        cur = await conn.execute(
            "SELECT batch_id FROM dialer.canceled_batches WHERE batch_id = ANY(%s)", (batch_ids,)
        )
        canceled_batches = {row["batch_id"] for row in await cur.fetchall()}
        rows = [
            (
                r.call_id,
                e.organization_id,
                lane_of(e.organization_id, r.batch_id),
                r.batch_id,
                r.to_number,
                r.from_number,
                r.record,
                "canceled" if r.batch_id in canceled_batches else "pending",
                e.position or 0,
                e.correlation_id,
                e.event_id,
                _rules(r),
                r.max_concurrency,
            )
            for e, r in requests
        ]
        cur = await conn.execute(
            "INSERT INTO dialer.dials (call_id, organization_id, lane, batch_id, to_number,"
            " from_number, record, state, requested_position, correlation_id, requested_event_id,"
            " request, max_concurrency)"
            " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::text[], %s::boolean[], %s::text[], %s::bigint[], %s::text[], %s::uuid[],"
            " %s::jsonb[], %s::integer[])"
            " ON CONFLICT (call_id) DO NOTHING"
            " RETURNING call_id, organization_id, correlation_id, requested_event_id, state",
            [list(column) for column in zip(*rows, strict=True)],
        )
        inserted = await cur.fetchall()
        canceled = [row for row in inserted if row["state"] == "canceled"]
        await _append_many(
            conn,
            [
                (row, CallCanceled(call_id=row["call_id"], reason="batch canceled"))
                for row in canceled
            ],
            "canceled",
        )
        if len(canceled) < len(inserted):
            await conn.execute("SELECT pg_notify(%s, '')", (WORK_CHANNEL,))
    return len(inserted)


async def cancel_batch(conn: Conn, organization_id: str, batch_id: str) -> int:
    """Cancel every not-yet-dialed call of a batch; return how many were canceled."""
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO dialer.canceled_batches (batch_id, organization_id) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING",
            (batch_id, organization_id),
        )
        cur = await conn.execute(
            "UPDATE dialer.dials SET state = 'canceled', finished_at = now()"
            " WHERE lane = %s AND state = 'pending'"
            " RETURNING call_id, organization_id, correlation_id, requested_event_id",
            (lane_of(organization_id, batch_id),),
        )
        rows = await cur.fetchall()
        await _append_many(
            conn,
            [(row, CallCanceled(call_id=row["call_id"], reason="batch canceled")) for row in rows],
            "canceled",
        )
        await conn.execute("SELECT pg_notify(%s, '')", (CANCEL_CHANNEL,))
    return len(rows)


# dials put off, expired or skipped by their campaign rules in one claim before it gives up
# (each in its own commit, a few milliseconds) and lets the loop wait for work
_HOLDS_PER_CLAIM: Final = 500


async def claim_next(conn: Conn, now: datetime | None = None) -> Dial | None:
    """Take the next pending dial, fairly, and mark it dialing (committed before dialing).

    Fairness is round robin: first among organizations with pending dials, then among that
    organization's lanes (each batch, and its single calls), each by least recently served.
    Not claimed: dials due after `now`, of a paused batch, or of a lane or organization at its
    concurrency limit (the lane's head waits). A head whose number has a call in flight waits a
    few seconds (its lane goes on); one that its campaign rules hold back (window, schedule,
    daily cap, do-not-call) is put off or ended instead; then the next head is taken.
    """
    now = now or datetime.now(UTC)
    for _ in range(_HOLDS_PER_CLAIM):
        async with conn.transaction():
            cur = await conn.execute(_HEADS, {"now": now})
            head = await cur.fetchone()
            if head is None:
                return None
            if head["number_in_flight"]:
                # one call to a number at a time: this one waits a little, its lane goes on
                await campaign_store.wait_for_number(conn, head["call_id"], now)
                await _served(conn, head)
                continue
            ruled = head["request"] is not None or head["daily_cap_per_number"]
            if (ruled or head["do_not_call"]) and await campaign_store.hold(conn, head, now):
                # counts as a turn: a batch whose window is closed takes turns with the calls
                # of others that can ring now, instead of keeping them waiting
                await _served(conn, head)
                continue
            return await _claim(conn, head)
    return None


_HEADS: Final = f"""
    WITH heads AS (
        SELECT DISTINCT ON (lane) call_id, lane, organization_id, requested_position, batch_id,
            to_number, request, max_concurrency
        FROM dialer.dials
        WHERE state = 'pending' AND not_before <= %(now)s
        ORDER BY lane, requested_position
    )
    SELECT h.call_id, h.lane, h.organization_id, h.to_number, h.request,
        p.daily_cap_per_number, coalesce(n.listed, false) AS do_not_call,
        EXISTS (SELECT 1 FROM dialer.dials f
                WHERE f.organization_id = h.organization_id AND f.to_number = h.to_number
                  AND {campaign_store.IN_FLIGHT}) AS number_in_flight
    FROM heads h
    LEFT JOIN dialer.calling_policies p ON p.organization_id = h.organization_id
    LEFT JOIN dialer.fairness o ON o.key = 'org:' || h.organization_id
    LEFT JOIN dialer.fairness l ON l.key = 'lane:' || h.lane
    LEFT JOIN dialer.do_not_call n
        ON n.organization_id = h.organization_id AND n.number = h.to_number
    WHERE NOT EXISTS (SELECT 1 FROM dialer.batch_pauses b
                      WHERE b.batch_id = h.batch_id AND b.paused)
      AND (h.max_concurrency IS NULL
           OR (SELECT count(*) FROM dialer.dials f
               WHERE f.lane = h.lane AND {campaign_store.IN_FLIGHT}) < h.max_concurrency)
      AND (p.max_concurrency IS NULL
           OR (SELECT count(*) FROM dialer.dials f
               WHERE f.organization_id = h.organization_id AND {campaign_store.IN_FLIGHT})
              < p.max_concurrency)
    ORDER BY o.last_served NULLS FIRST, l.last_served NULLS FIRST, h.requested_position
    LIMIT 1
"""


async def _served(conn: Conn, head: Mapping[str, Any]) -> None:
    """The head's organization and lane had their turn (round-robin fairness)."""
    await conn.execute(
        "INSERT INTO dialer.fairness (key, last_served)"
        " VALUES (%s, clock_timestamp()), (%s, clock_timestamp())"
        " ON CONFLICT (key) DO UPDATE SET last_served = excluded.last_served",
        (f"org:{head['organization_id']}", f"lane:{head['lane']}"),
    )


async def _claim(conn: Conn, head: Mapping[str, Any]) -> Dial | None:
    cur = await conn.execute(
        "UPDATE dialer.dials SET state = 'dialing', attempts = attempts + 1,"
        " dial_started_at = now() WHERE call_id = %s AND state = 'pending'"
        f" RETURNING {_DIAL_COLUMNS}",
        (head["call_id"],),
    )
    row = await cur.fetchone()
    await _served(conn, head)
    if row is None:
        return None
    dial = Dial(**row)
    if dial.batch_id:
        cur = await conn.execute(
            "SELECT 1 FROM dialer.canceled_batches WHERE batch_id = %s", (dial.batch_id,)
        )
        if await cur.fetchone() is not None:  # canceled while its request was in flight
            await conn.execute(
                "UPDATE dialer.dials SET state = 'canceled', finished_at = now()"
                " WHERE call_id = %s",
                (dial.call_id,),
            )
            await _append(
                conn,
                dial,
                CallCanceled(call_id=dial.call_id, reason="batch canceled"),
                "canceled",
            )
            return None
    return dial


async def mark_initiated(conn: Conn, call_id: uuid.UUID, call_sid: str, source: str) -> bool:
    """The carrier has the call: record its SID (once, whoever learns it first)."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE dialer.dials SET state = 'initiated', call_sid = %s, finished_at = now()"
            f" WHERE call_id = %s AND state = 'dialing' RETURNING {_DIAL_COLUMNS}",
            (call_sid, call_id),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        await _append(
            conn,
            row,
            CallInitiated(call_id=call_id, call_sid=call_sid, source=source),
            "initiated",
        )
    return True


async def mark_failed(
    conn: Conn,
    call_id: uuid.UUID,
    *,
    code: int | None,
    message: str,
    http_status: int | None,
) -> bool:
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE dialer.dials SET state = 'failed', error_code = %s, error_message = %s,"
            " finished_at = now() WHERE call_id = %s AND state = 'dialing'"
            f" RETURNING {_DIAL_COLUMNS}",
            (code, message, call_id),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        await _append(
            conn,
            row,
            CallFailed(
                call_id=call_id, error_code=code, error_message=message, http_status=http_status
            ),
            "failed",
        )
    return True


async def retry_later(conn: Conn, call_id: uuid.UUID, delay_seconds: float) -> None:
    """The carrier certainly did not create the call: put it back in line after a delay."""
    await conn.execute(
        "UPDATE dialer.dials SET state = 'pending', dial_started_at = NULL,"
        " not_before = now() + make_interval(secs => %s)"
        " WHERE call_id = %s AND state = 'dialing'",
        (delay_seconds, call_id),
    )


async def dialing(conn: Conn) -> list[Dial]:
    """Dials in flight or left ambiguous (by a crash, a timeout, a 5xx)."""
    cur = await conn.execute(
        f"SELECT {_DIAL_COLUMNS} FROM dialer.dials WHERE state = 'dialing' ORDER BY dial_started_at"
    )
    return [Dial(**row) for row in await cur.fetchall()]


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
    # statuses.advances in SQL: array_position is 1-based, so position(known) <= rank(new)
    # is rank(known) < rank(new)
    cur = await conn.execute(
        "UPDATE dialer.dials SET carrier_status = %(status)s, carrier_news_at = now()"
        " WHERE call_id = %(call_id)s AND (carrier_status IS NULL"
        " OR (carrier_status <> ALL(%(terminal)s)"
        " AND coalesce(array_position(%(progress)s::text[], carrier_status), 0) <= %(rank)s))"
        " RETURNING record, recording_reported_at IS NOT NULL AS recording_reported",
        {
            "status": status,
            "call_id": call_id,
            "terminal": sorted(TERMINAL),
            "progress": list(PROGRESS),
            "rank": rank(status),
        },
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
        await _mark_recordings_due(conn, call_id, due_at)


async def note_call_ended(
    conn: Conn, call_id: uuid.UUID, *, answered_by: str | None, now: datetime | None = None
) -> None:
    """A call ended at the carrier: its concurrency slot is free (the dial loop is woken), and
    its next attempt is requested if its retry policy says so."""
    follow_up = await campaign_store.schedule_retry(
        conn, call_id, answered_by=answered_by, now=now or datetime.now(UTC)
    )
    await enqueue_many(conn, follow_up)
    await conn.execute("SELECT pg_notify(%s, '')", (WORK_CHANNEL,))


async def _mark_recordings_due(conn: Conn, call_id: uuid.UUID, due_at: datetime) -> None:
    # not over an earlier mark, and not once the recording has been reported (a report seen
    # since the decision was made, by another replica)
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


def reported_at(found: CarrierCall, now: datetime) -> datetime:
    """When a status learned by asking happened: a call that has ended, when the carrier says
    it ended (so the call log's end_time is the call's, not when we found out); otherwise, or
    if the carrier's clock is ahead of ours, now."""
    if found.status in TERMINAL and found.end_time is not None:
        return min(found.end_time, now)
    return now


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
            "SELECT call_id, organization_id, correlation_id, requested_event_id, carrier_status,"
            " record, recording_reported_at FROM dialer.dials WHERE call_id = %s FOR UPDATE",
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
        recorded = await eventstore.append(conn, [_on_call(row, report, event_id)])
        _count_appended(recorded)
        if found.status in TERMINAL:  # settled by asking: its slot frees, a retry may follow
            await note_call_ended(conn, call_id, answered_by=found.answered_by)
    return True


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
            " RETURNING call_id, organization_id, correlation_id, requested_event_id",
            {"again": again_after_seconds, "call_id": call_id},
        )
        row = await cur.fetchone()
        if row is None or not reports:
            return 0
        recorded = await eventstore.append(
            conn,
            [
                _on_call(
                    row, report, recording_reported_id(call_id, report.recording_sid, report.status)
                )
                for report in reports
            ],
        )
        _count_appended(recorded)
    return len(recorded)


@dataclass(frozen=True)
class CancelCandidate:
    call_id: uuid.UUID
    call_sid: str
    batch_canceled: bool
    seconds_since_placed: float


async def cancel_candidates(
    conn: Conn, *, queue_limit_seconds: float, limit: int = 100
) -> list[CancelCandidate]:
    """Placed calls that may need canceling at the carrier, never asked before: those of a
    canceled batch not known to be answered or ended, and those with no news beyond
    `queued` for longer than the limit."""
    cur = await conn.execute(
        "SELECT d.call_id, d.call_sid, b.batch_id IS NOT NULL AS batch_canceled,"
        " extract(epoch FROM now() - d.finished_at)::float8 AS seconds_since_placed"
        " FROM dialer.dials d LEFT JOIN dialer.canceled_batches b ON b.batch_id = d.batch_id"
        " WHERE d.state = 'initiated' AND d.carrier_cancel IS NULL"
        " AND (d.carrier_status IS NULL OR d.carrier_status IN ('queued', 'initiated', 'ringing'))"
        " AND (b.batch_id IS NOT NULL OR ((d.carrier_status IS NULL OR d.carrier_status = 'queued')"
        "      AND d.finished_at <= now() - make_interval(secs => %s)))"
        " ORDER BY d.finished_at LIMIT %s",
        (queue_limit_seconds, limit),
    )
    return [CancelCandidate(**row) for row in await cur.fetchall()]


async def note_carrier_cancel(conn: Conn, call_id: uuid.UUID, result: str) -> None:
    """The carrier answered a cancel (`canceled` or `refused`): it is never asked again."""
    await conn.execute(
        "UPDATE dialer.dials SET carrier_cancel = %s WHERE call_id = %s AND carrier_cancel IS NULL",
        (result, call_id),
    )


async def known_sids(conn: Conn, sids: list[str]) -> set[str]:
    cur = await conn.execute("SELECT call_sid FROM dialer.dials WHERE call_sid = ANY(%s)", (sids,))
    return {row["call_sid"] for row in await cur.fetchall()}


async def pending_count(conn: Conn) -> int:
    cur = await conn.execute("SELECT count(*) AS n FROM dialer.dials WHERE state = 'pending'")
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def redial(conn: Conn, call_id: uuid.UUID) -> bool:
    """The carrier has no trace of an ambiguous attempt: dial it again, once."""
    cur = await conn.execute(
        "UPDATE dialer.dials SET state = 'pending', redialed = true, dial_started_at = NULL,"
        " not_before = now() WHERE call_id = %s AND state = 'dialing' AND NOT redialed"
        " RETURNING call_id",
        (call_id,),
    )
    return await cur.fetchone() is not None
