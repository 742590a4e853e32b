"""Step 3 of a call's path: requested calls into the dials table as `pending` (each once), and
batch cancels (a canceled batch's calls not yet dialed end `canceled`, now or when they
arrive). A batch's calls come in its one BatchRequested (`enqueue_batch`); their streams are
opened later, when each call is first handled (`dials.open_streams`)."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Collection, Sequence
from typing import Any, Final

import pydantic_core
from calls_events import (
    BatchRequested,
    CallCanceled,
    CallRequested,
    Envelope,
    requested_call_documents,
)
from calls_platform.db import Conn

from . import dials
from .dials import CANCEL_CHANNEL, EVENT_COLUMNS, WORK_CHANNEL
from .fairness import lane_of

BATCH_CANCELED = "batch canceled"


def _rules(request: dict[str, Any]) -> dict[str, Any] | None:
    """What the dialer keeps of a request (CallRequested data) with campaign rules
    (variables, schedule, retry): the whole request, which a retry is made from. None for a
    plain call."""
    if not (request.get("variables") or request.get("schedule") or request.get("retry")):
        return None
    return request


def _row(
    request: dict[str, Any],
    *,
    organization_id: str,
    correlation_id: str | None,
    event_id: str,
    position: int,
    unopened: dict[str, Any] | None,
) -> dict[str, Any]:
    """A dial's row, from its request's data and envelope."""
    batch_id = request.get("batch_id")
    return {
        "call_id": request["call_id"],
        "organization_id": organization_id,
        "lane": lane_of(organization_id, batch_id),
        "batch_id": batch_id,
        "to_number": request["to_number"],
        "from_number": request["from_number"],
        "record": request["record"],
        "requested_position": position,
        "correlation_id": correlation_id,
        "requested_event_id": event_id,
        "request": _rules(request),
        "max_concurrency": request.get("max_concurrency"),
        "batch_index": request.get("batch_index"),
        "unopened": unopened,
    }


async def enqueue(conn: Conn, envelope: Envelope, request: CallRequested) -> bool:
    """Record a requested call as pending (once); a call of a canceled batch ends canceled."""
    return await enqueue_many(conn, [(envelope, request)]) == 1


async def enqueue_many(conn: Conn, requests: Sequence[tuple[Envelope, CallRequested]]) -> int:
    """Record stored requests in one transaction (an older 10,000-call batch arrives as 10,000
    messages: taking them in bulk keeps a single call from waiting behind them). Each call is
    recorded once; calls of a canceled batch end canceled. Returns how many were new."""
    return await _enqueue(
        conn,
        [
            _row(
                request.model_dump(mode="json"),
                organization_id=e.organization_id,
                correlation_id=e.correlation_id,
                event_id=str(e.event_id),
                position=e.position or 0,
                unopened=None,
            )
            for e, request in requests
        ],
    )


async def enqueue_batch(
    conn: Conn,
    envelope: Envelope,
    batch: BatchRequested,
    *,
    only: Collection[uuid.UUID] | None = None,
) -> int:
    """Record the calls `batch` carries (`only`: those of them) as pending dials whose streams
    are not open yet: each keeps its CallRequested's envelope (`unopened`, appended when the
    dialer first handles the call) and the batch's position, in the batch's order. An older
    batch carries none (its CallRequested events follow it). Returns how many were new."""
    wanted = None if only is None else {str(call_id) for call_id in only}
    return await _enqueue(
        conn,
        [
            _row(
                document["data"],
                organization_id=envelope.organization_id,
                correlation_id=envelope.correlation_id,
                event_id=document["event_id"],
                position=envelope.position or 0,
                unopened=document,
            )
            for document in requested_call_documents(envelope, batch)
            if wanted is None or document["data"]["call_id"] in wanted
        ],
    )


# The rows travel as one JSON document (an array of 10,000 jsonb values was escaped element
# by element by the driver: 0.9 s of a batch's intake); only a canceled call's envelope is
# read back, to open its stream.
_INSERT: Final = """
INSERT INTO dialer.dials (call_id, organization_id, lane, batch_id, to_number, from_number,
    record, state, requested_position, correlation_id, requested_event_id, request,
    max_concurrency, batch_index, unopened)
SELECT call_id, organization_id, lane, batch_id, to_number, from_number, record,
    CASE WHEN batch_id = ANY(%(canceled)s) THEN 'canceled' ELSE 'pending' END,
    requested_position, correlation_id, requested_event_id, request, max_concurrency,
    batch_index, unopened
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r (
    call_id uuid, organization_id text, lane text, batch_id text, to_number text,
    from_number text, record boolean, requested_position bigint, correlation_id text,
    requested_event_id uuid, request jsonb, max_concurrency integer, batch_index integer,
    unopened jsonb)
ON CONFLICT (call_id) DO NOTHING
RETURNING call_id, organization_id, correlation_id, requested_event_id,
    CASE WHEN state = 'canceled' THEN unopened END AS unopened, state
"""


async def lock_batches(conn: Conn, batch_ids: Sequence[str]) -> None:
    """Hold each batch's intake lock until the caller's transaction ends (advisory: it takes
    no transaction id; in sorted order, so two holders never wait for each other). A cancel
    and the intake of the same batch's calls run one after the other: a cancel committed
    while a batch's 10,000 calls were being inserted saw none of them, and they stayed
    pending (found trying a cancel right after an accept, under load)."""
    for batch_id in sorted(set(batch_ids)):
        # a key as the project's other advisory locks make theirs (leader.lock_key, the
        # recordings catalog's): crc32 of the lock's kind and subject
        key = zlib.crc32(f"dialer-batch-intake:{batch_id}".encode())
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))


async def _enqueue(conn: Conn, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    async with conn.transaction():
        batch_ids = sorted({row["batch_id"] for row in rows if row["batch_id"]})
        await lock_batches(conn, batch_ids)
        canceled_batches: list[str] = []
        if batch_ids:
            cur = await conn.execute(
                "SELECT batch_id FROM dialer.canceled_batches WHERE batch_id = ANY(%s)",
                (batch_ids,),
            )
            canceled_batches = [row["batch_id"] for row in await cur.fetchall()]
        cur = await conn.execute(
            _INSERT, {"rows": pydantic_core.to_json(rows).decode(), "canceled": canceled_batches}
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
        await lock_batches(conn, [batch_id])  # after an intake of its calls in flight
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
