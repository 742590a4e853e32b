"""The dialer's campaign state and what its decisions do to dials, each change with its event
in the same commit: calls put off (window, start, daily cap), expired, skipped (do-not-call)
or retried; and the projections of the campaign events it consumes (paused batches, the
do-not-call lists, calling policies), each row guarded by the position of the last event
applied to it, so a redelivered older event changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple

from calls_events import (
    BatchPaused,
    BatchResumed,
    CallExpired,
    CallingPolicySet,
    CallRequested,
    CallRetryScheduled,
    CallScheduled,
    CallSkipped,
    DoNotCallAdded,
    DoNotCallRemoved,
    Envelope,
    Event,
    Schedule,
    call_stream,
)
from calls_platform import eventstore
from calls_platform.db import Conn
from psycopg import sql

from . import campaigns, dials
from .campaigns import Defer, DialNow, Expire, Skip
from .dials import on_call
from .statuses import TERMINAL, sql_list

DAY: Final = timedelta(hours=24)


def request_of(row: Mapping[str, Any]) -> CallRequested | None:
    data = row.get("request")
    return CallRequested.model_validate(data) if data else None


async def _cap_frees_at(conn: Conn, head: Mapping[str, Any], now: datetime) -> datetime | None:
    """When the number may be called again under the organization's daily cap (None: now)."""
    cap = head.get("daily_cap_per_number")
    if not cap:
        return None
    cur = await conn.execute(
        "SELECT dial_started_at FROM dialer.dials WHERE organization_id = %s AND to_number = %s"
        " AND dial_started_at > %s ORDER BY dial_started_at DESC OFFSET %s LIMIT 1",
        (head["organization_id"], head["to_number"], now - DAY, cap - 1),
    )
    row = await cur.fetchone()
    return row["dial_started_at"] + DAY if row else None


async def hold(conn: Conn, head: Mapping[str, Any], now: datetime) -> bool:
    """Apply the campaign rules to the dial about to be claimed. False: dial it now. True: it
    was put off, expired or skipped (recorded with its event); claim another."""
    request = request_of(head)
    schedule: Schedule | None = request.schedule if request else None
    decision = campaigns.decide(
        to_number=head["to_number"],
        schedule=schedule,
        now=now,
        do_not_call=bool(head.get("do_not_call")),
        cap_frees_at=await _cap_frees_at(conn, head, now),
    )
    call_id = head["call_id"]
    match decision:
        case DialNow():
            return False
        case Defer(until=until, reason=reason):
            changed = await _change(conn, call_id, "not_before = %s", until)
            event: Event = CallScheduled(call_id=call_id, not_before=until, reason=reason)
            kind = f"scheduled-{until.isoformat()}"
        case Expire(end_at=end_at):
            changed = await _change(conn, call_id, "state = %s, finished_at = now()", "expired")
            event, kind = CallExpired(call_id=call_id, end_at=end_at), "expired"
        case Skip(reason=reason):
            changed = await _change(conn, call_id, "state = %s, finished_at = now()", "skipped")
            event, kind = CallSkipped(call_id=call_id, reason=reason), "skipped"
    # not pending any more (its batch canceled meanwhile, by a consumer): nothing to record
    if changed:
        await dials.append(conn, [(head, event)], kind)
    return True


async def _change(conn: Conn, call_id: uuid.UUID, assignments: str, value: object) -> bool:
    """Change a dial that is still pending; whether it was."""
    cur = await conn.execute(
        f"UPDATE dialer.dials SET {assignments} WHERE call_id = %s AND state = 'pending'",
        (value, call_id),
    )
    return cur.rowcount == 1


async def schedule_retry(
    conn: Conn,
    call_id: uuid.UUID,
    *,
    answered_by: str | None,
    now: datetime,
) -> list[tuple[Envelope, CallRequested]]:
    """A call ended: if its retry policy says so, request the next attempt (a new call, linked
    to this one, due after the delay and inside the window), once however often this runs.
    Not for a canceled batch. Returns the next attempt's request as recorded, to be enqueued
    (nothing when there is none, or it was requested before)."""
    cur = await conn.execute(
        "SELECT d.call_id, d.organization_id, d.correlation_id, d.requested_event_id, d.request,"
        " d.carrier_status, b.batch_id IS NOT NULL AS batch_canceled FROM dialer.dials d"
        " LEFT JOIN dialer.canceled_batches b ON b.batch_id = d.batch_id WHERE d.call_id = %s",
        (call_id,),
    )
    row = await cur.fetchone()
    request = request_of(row) if row else None
    if row is None or request is None or row["batch_canceled"] or not row["carrier_status"]:
        return []
    retry = campaigns.retry_after(
        request.retry,
        attempt=request.attempt,
        # how the call ended as the dialer knows it (never moves back), not as one report says
        carrier_status=row["carrier_status"],
        answered_by=answered_by,
        now=now,
    )
    if retry is None:
        return []
    next_id = campaigns.retry_call_id(call_id)
    schedule = request.schedule or Schedule()
    start_at = max(schedule.start_at or retry.not_before, retry.not_before)
    follow_up = request.model_copy(
        update={
            "call_id": next_id,
            "attempt": retry.attempt,
            "previous_call_id": call_id,
            "first_call_id": request.first_call_id or call_id,
            "schedule": schedule.model_copy(update={"start_at": start_at}),
        }
    )
    scheduled = CallRetryScheduled(
        call_id=call_id,
        retry_call_id=next_id,
        attempt=retry.attempt,
        not_before=retry.not_before,
        because=retry.because,
    )
    scheduled_id = eventstore.deterministic_event_id("retry-scheduled", str(call_id))
    requested = Envelope.wrap(
        follow_up,
        stream_id=call_stream(next_id),
        organization_id=row["organization_id"],
        correlation_id=row["correlation_id"],
        causation_id=str(scheduled_id),
        event_id=eventstore.deterministic_event_id("retry-requested", str(next_id)),
    )
    recorded = await eventstore.append(conn, [on_call(row, scheduled, scheduled_id), requested])
    return [(e, follow_up) for e in recorded if e.event_type == CallRequested.TYPE]


# --- projections of the campaign events -----------------------------------------------------


class Folded(NamedTuple):
    """What folding a campaign event did: whether it changed the dialer's tables (False: they
    already held it, or a later event of the same key), and whether dialing may now proceed
    where it could not before (a resume, a number taken off the list, a higher limit)."""

    applied: bool
    unblocks: bool


async def apply_campaign_event(conn: Conn, envelope: Envelope, event: Event) -> Folded:
    """Fold one campaign event into the dialer's tables (idempotent)."""
    org = envelope.organization_id
    if isinstance(event, BatchPaused | BatchResumed):
        paused = isinstance(event, BatchPaused)
        keys = {"batch_id": event.batch_id}
        applied = await _project(
            conn, envelope, "batch_pauses", keys, organization_id=org, paused=paused
        )
        return Folded(applied, applied and not paused)
    if isinstance(event, DoNotCallAdded | DoNotCallRemoved):
        listed = isinstance(event, DoNotCallAdded)
        keys = {"organization_id": org, "number": event.number}
        applied = await _project(conn, envelope, "do_not_call", keys, listed=listed)
        return Folded(applied, applied and not listed)
    if isinstance(event, CallingPolicySet):
        applied = await _project(
            conn,
            envelope,
            "calling_policies",
            {"organization_id": org},
            max_concurrency=event.max_concurrency,
            daily_cap_per_number=event.daily_cap_per_number,
        )
        return Folded(applied, applied)
    return Folded(False, False)


async def _project(
    conn: Conn, envelope: Envelope, table: str, keys: Mapping[str, Any], **values: Any
) -> bool:
    """Upsert the row of `keys` in dialer.`table` with `values`, unless it already holds
    this event's or a later one's (its `last_position`: a redelivered older event changes
    nothing); True if the row was written."""
    columns = {**keys, **values, "last_position": envelope.position or 0}
    target = sql.Identifier("dialer", table)
    cur = await conn.execute(
        sql.SQL(
            "INSERT INTO {target} ({columns}) VALUES ({values}) ON CONFLICT ({keys}) DO UPDATE"
            " SET {updates} WHERE {target}.last_position < excluded.last_position"
        ).format(
            target=target,
            columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
            values=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            keys=sql.SQL(", ").join(map(sql.Identifier, keys)),
            updates=sql.SQL(", ").join(
                sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c))
                for c in columns
                if c not in keys
            ),
        ),
        list(columns.values()),
    )
    return cur.rowcount > 0


CAMPAIGN_EVENTS: Final = (
    BatchPaused,
    BatchResumed,
    DoNotCallAdded,
    DoNotCallRemoved,
    CallingPolicySet,
)
# placed (or being placed) and not yet ended: what holds a concurrency slot, and what keeps a
# number from being called twice at once (the predicate of the dials_in_flight index)
IN_FLIGHT: Final = (
    "(state = 'dialing' OR (state = 'initiated' AND (carrier_status IS NULL"
    f" OR carrier_status NOT IN {sql_list(TERMINAL)})))"
)


def number_busy(dial: str) -> str:
    """SQL: the organization of the dial aliased `dial` has a call in flight to its number
    (one call to a number at a time; the `dials_in_flight` index)."""
    return (
        f"EXISTS (SELECT 1 FROM dialer.dials busy WHERE busy.organization_id = {dial}"
        f".organization_id AND busy.to_number = {dial}.to_number AND {IN_FLIGHT})"
    )
