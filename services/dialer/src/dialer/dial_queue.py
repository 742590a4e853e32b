"""Step 3 of a call's path: requested calls into the dials table as `pending` (each once), and
batch cancels (a canceled batch's calls not yet dialed end `canceled`, now or when they
arrive). A batch's calls come in its one BatchRequested (`enqueue_batch`); their streams are
opened later, when each call is first handled (`dials.open_streams`)."""

from __future__ import annotations

from collections.abc import Sequence

from calls_events import (
    BatchRequested,
    CallCanceled,
    CallRequested,
    Envelope,
    requested_call_envelope,
    requested_calls,
)
from calls_platform.db import Conn
from psycopg.types.json import Jsonb

from . import dials
from .dials import CANCEL_CHANNEL, EVENT_COLUMNS, WORK_CHANNEL
from .fairness import lane_of

BATCH_CANCELED = "batch canceled"


def _rules(request: CallRequested) -> Jsonb | None:
    """What the dialer keeps of a request with campaign rules (variables, schedule, retry):
    the whole request, which a retry is made from. None for a plain call."""
    if not (request.variables or request.schedule or request.retry):
        return None
    return Jsonb(request.model_dump(mode="json"))


async def enqueue(conn: Conn, envelope: Envelope, request: CallRequested) -> bool:
    """Record a requested call as pending (once); a call of a canceled batch ends canceled."""
    return await enqueue_many(conn, [(envelope, request)]) == 1


def batch_requests(
    envelope: Envelope, batch: BatchRequested
) -> list[tuple[Envelope, CallRequested]]:
    """The requests a batch carries, each with the envelope its stream is to be opened with."""
    return [(requested_call_envelope(envelope, call), call) for call in requested_calls(batch)]


async def enqueue_batch(conn: Conn, envelope: Envelope, batch: BatchRequested) -> int:
    """Record the calls `batch` carries (none: an older batch, whose CallRequested events
    follow it) as pending dials whose streams are not open yet."""
    return await enqueue_many(conn, batch_requests(envelope, batch), batch=envelope)


async def enqueue_many(
    conn: Conn,
    requests: Sequence[tuple[Envelope, CallRequested]],
    *,
    batch: Envelope | None = None,
) -> int:
    """Record requested calls in one transaction (an older 10,000-call batch arrives as 10,000
    messages: taking them in bulk keeps a single call from waiting behind them). Each call is
    recorded once; calls of a canceled batch end canceled. Returns how many were new.

    With `batch`: the requests are the calls that batch's stored event carries, not stored
    yet themselves; each dial keeps its envelope (`unopened`) and the batch's position."""
    if not requests:
        return 0
    async with conn.transaction():
        batch_ids = sorted({r.batch_id for _, r in requests if r.batch_id})
        canceled_batches: set[str] = set()
        if batch_ids:
            cur = await conn.execute(
                "SELECT batch_id FROM dialer.canceled_batches WHERE batch_id = ANY(%s)",
                (batch_ids,),
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
                (batch.position if batch else e.position) or 0,
                e.correlation_id,
                e.event_id,
                _rules(r),
                r.max_concurrency,
                r.batch_index,
                Jsonb(e.model_dump(mode="json")) if batch else None,
            )
            for e, r in requests
        ]
        cur = await conn.execute(
            "INSERT INTO dialer.dials (call_id, organization_id, lane, batch_id, to_number,"
            " from_number, record, state, requested_position, correlation_id, requested_event_id,"
            " request, max_concurrency, batch_index, unopened)"
            " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::text[], %s::boolean[], %s::text[], %s::bigint[], %s::text[], %s::uuid[],"
            " %s::jsonb[], %s::integer[], %s::integer[], %s::jsonb[])"
            " ON CONFLICT (call_id) DO NOTHING"
            f" RETURNING {EVENT_COLUMNS}, state",
            [list(column) for column in zip(*rows, strict=True)],
        )
        inserted = await cur.fetchall()
        canceled = [row for row in inserted if row["state"] == "canceled"]
        await append_canceled(conn, canceled)
        if len(canceled) < len(inserted):
            await dials.notify(conn, WORK_CHANNEL)
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
            f" WHERE lane = %s AND state = 'pending' RETURNING {EVENT_COLUMNS}",
            (lane_of(organization_id, batch_id),),
        )
        rows = await cur.fetchall()
        await append_canceled(conn, rows)
        await dials.notify(conn, CANCEL_CHANNEL)
    return len(rows)


async def append_canceled(conn: Conn, rows: Sequence[dials.Row]) -> None:
    """A CallCanceled for each dial (of a canceled batch), once per call."""
    await dials.append(
        conn,
        [(row, CallCanceled(call_id=dials.call_id_of(row), reason=BATCH_CANCELED)) for row in rows],
        "canceled",
    )


async def pending_count(conn: Conn) -> int:
    cur = await conn.execute("SELECT count(*) AS n FROM dialer.dials WHERE state = 'pending'")
    row = await cur.fetchone()
    return int(row["n"]) if row else 0
