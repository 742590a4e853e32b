"""The webhooks schema: endpoints, deliveries (the service's queue), attempts, and the state
kept per stream and batch. Every query of the API is scoped to the caller's organization."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from calls_platform.db import Conn

from .domain import Message, StreamState

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"
DELIVERY_STATES: Final = (PENDING, DELIVERED, FAILED)
NOTIFY_CHANNEL: Final = "webhooks_due"

_ENDPOINT_COLUMNS = (
    "id, organization_id, url, description, events, enabled, disabled_reason, disabled_at,"
    " previous_secret_expires_at, failing_since, created_at, updated_at"
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def endpoint_view(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    expires = row["previous_secret_expires_at"]
    return {
        "id": str(row["id"]),
        "url": row["url"],
        "description": row["description"],
        "events": list(row["events"]),
        "enabled": row["enabled"],
        "disabled_reason": row["disabled_reason"],
        "disabled_at": _iso(row["disabled_at"]),
        "failing_since": _iso(row["failing_since"]),
        "previous_secret_expires_at": _iso(expires) if expires and expires > now else None,
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


# --- endpoints ----------------------------------------------------------------------------


async def create_endpoint(
    conn: Conn,
    *,
    organization_id: str,
    url: str,
    events: Sequence[str],
    description: str | None,
    secret_sealed: str,
    now: datetime,
) -> dict[str, Any]:
    cur = await conn.execute(
        "INSERT INTO webhooks.endpoints (id, organization_id, url, description, events,"
        " secret_sealed, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        f" RETURNING {_ENDPOINT_COLUMNS}",
        (uuid.uuid4(), organization_id, url, description, list(events), secret_sealed, now, now),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def list_endpoints(conn: Conn, organization_id: str) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhooks.endpoints WHERE organization_id = %s"
        " ORDER BY created_at, id",
        (organization_id,),
    )
    return await cur.fetchall()


async def get_endpoint(
    conn: Conn, organization_id: str, endpoint_id: uuid.UUID
) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhooks.endpoints"
        " WHERE organization_id = %s AND id = %s",
        (organization_id, endpoint_id),
    )
    return await cur.fetchone()


async def update_endpoint(
    conn: Conn,
    organization_id: str,
    endpoint_id: uuid.UUID,
    changes: dict[str, Any],
    *,
    now: datetime,
) -> dict[str, Any] | None:
    """Change url, events, description and/or enabled. Enabling again clears why it was
    disabled and restarts the failing clock."""
    sets = ["updated_at = %(now)s"]
    params: dict[str, Any] = {"org": organization_id, "id": endpoint_id, "now": now}
    for column in ("url", "events", "description", "enabled"):
        if column in changes:
            sets.append(f"{column} = %({column})s")
            params[column] = changes[column]
    if changes.get("enabled") is True:
        sets += ["disabled_reason = NULL", "disabled_at = NULL", "failing_since = NULL"]
    elif changes.get("enabled") is False:
        sets += ["disabled_reason = NULL", "disabled_at = %(now)s"]
    cur = await conn.execute(
        f"UPDATE webhooks.endpoints SET {', '.join(sets)}"
        f" WHERE organization_id = %(org)s AND id = %(id)s RETURNING {_ENDPOINT_COLUMNS}",
        params,
    )
    return await cur.fetchone()


async def delete_endpoint(conn: Conn, organization_id: str, endpoint_id: uuid.UUID) -> bool:
    cur = await conn.execute(
        "DELETE FROM webhooks.endpoints WHERE organization_id = %s AND id = %s",
        (organization_id, endpoint_id),
    )
    return cur.rowcount == 1


async def rotate_secret(
    conn: Conn,
    organization_id: str,
    endpoint_id: uuid.UUID,
    *,
    secret_sealed: str,
    grace: timedelta,
    now: datetime,
) -> dict[str, Any] | None:
    """The new secret signs from now on; the current one keeps signing too until the grace
    period ends, so the receiver can switch without rejecting a message."""
    cur = await conn.execute(
        "UPDATE webhooks.endpoints SET previous_secret_sealed = secret_sealed,"
        " previous_secret_expires_at = %s, secret_sealed = %s, updated_at = %s"
        f" WHERE organization_id = %s AND id = %s RETURNING {_ENDPOINT_COLUMNS}",
        (now + grace, secret_sealed, now, organization_id, endpoint_id),
    )
    return await cur.fetchone()


async def subscribers(
    conn: Conn, organization_id: str, event_type: str, created_before: datetime
) -> list[uuid.UUID]:
    """The organization's enabled endpoints subscribed to `event_type` that existed when the
    event happened (an endpoint gets what happens after it is created; older events: replay)."""
    cur = await conn.execute(
        "SELECT id FROM webhooks.endpoints WHERE organization_id = %s AND enabled"
        " AND %s = ANY(events) AND created_at <= %s ORDER BY id",
        (organization_id, event_type, created_before),
    )
    return [row["id"] for row in await cur.fetchall()]


async def has_enabled_endpoint(conn: Conn, organization_id: str) -> bool:
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM webhooks.endpoints"
        " WHERE organization_id = %s AND enabled) AS found",
        (organization_id,),
    )
    row = await cur.fetchone()
    return bool(row and row["found"])


# --- streams and batches ----------------------------------------------------------------


async def lock_stream(conn: Conn, stream_id: str) -> StreamState:
    """The stream's state, locked until the transaction ends (one taker per stream at once)."""
    await conn.execute(
        "INSERT INTO webhooks.streams (stream_id) VALUES (%s) ON CONFLICT DO NOTHING",
        (stream_id,),
    )
    cur = await conn.execute(
        "SELECT next_version, batch_id, sent FROM webhooks.streams WHERE stream_id = %s FOR UPDATE",
        (stream_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return StreamState(row["next_version"], row["batch_id"], frozenset(row["sent"]))


async def peek_stream(conn: Conn, stream_id: str) -> StreamState:
    """The stream's state as last committed, not locked (what the intake prepares against,
    outside its transaction)."""
    cur = await conn.execute(
        "SELECT next_version, batch_id, sent FROM webhooks.streams WHERE stream_id = %s",
        (stream_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return StreamState()
    return StreamState(row["next_version"], row["batch_id"], frozenset(row["sent"]))


async def save_stream(conn: Conn, stream_id: str, state: StreamState) -> None:
    await conn.execute(
        "UPDATE webhooks.streams SET next_version = %s, batch_id = %s, sent = %s"
        " WHERE stream_id = %s",
        (state.next_version, state.batch_id, sorted(state.sent), stream_id),
    )


@dataclass(frozen=True)
class BatchProgress:
    total: int | None
    ended: int
    completed: bool


async def count_batch(
    conn: Conn, batch_id: str, organization_id: str, *, total: int | None = None, ended: int = 0
) -> BatchProgress:
    """Record a batch's total or one more of its calls ended; the batch's progress, locked."""
    cur = await conn.execute(
        "INSERT INTO webhooks.batches AS b (batch_id, organization_id, total, ended)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (batch_id) DO UPDATE"
        " SET total = coalesce(EXCLUDED.total, b.total), ended = b.ended + EXCLUDED.ended"
        " RETURNING total, ended, completed",
        (batch_id, organization_id, total, ended),
    )
    row = await cur.fetchone()
    assert row is not None
    return BatchProgress(row["total"], row["ended"], row["completed"])


async def mark_batch_completed(conn: Conn, batch_id: str) -> None:
    await conn.execute(
        "UPDATE webhooks.batches SET completed = true WHERE batch_id = %s", (batch_id,)
    )


# --- deliveries -----------------------------------------------------------------------------


def payload(message: Message, data: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": message.id,
        "type": message.type,
        "created_at": _iso(message.created_at),
        "data": data,
    }


async def add_deliveries(
    conn: Conn,
    message: Message,
    endpoint_ids: Sequence[uuid.UUID],
    data: dict[str, Any] | None,
    *,
    now: datetime,
) -> int:
    """One pending delivery of `message` per endpoint (once: a message already queued for an
    endpoint is not queued again); `data` None means it is fetched before the first attempt."""
    if not endpoint_ids:
        return 0
    body = json.dumps(payload(message, data))
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO webhooks.deliveries (id, endpoint_id, organization_id, message_id,"
            " event_type, sequence_key, position, call_id, batch_id, payload, data_pending,"
            " next_attempt_at, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s)"
            " ON CONFLICT (endpoint_id, message_id) DO NOTHING",
            [
                (
                    uuid.uuid4(),
                    endpoint_id,
                    message.organization_id,
                    message.id,
                    message.type,
                    message.sequence_key,
                    message.position,
                    message.call_id,
                    message.batch_id,
                    body,
                    data is None,
                    now,
                    now,
                )
                for endpoint_id in endpoint_ids
            ],
        )
        added = cur.rowcount
    await conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))
    return added


# The due head of each sequence: pending, due, not held by a sender, with nothing pending
# before it in its sequence for its endpoint (a call's next event waits for the previous one).
_DUE = """
SELECT d.id, d.endpoint_id FROM webhooks.deliveries d
JOIN webhooks.endpoints e ON e.id = d.endpoint_id AND e.enabled
WHERE d.state = 'pending' AND d.next_attempt_at <= %(now)s
  AND (d.leased_until IS NULL OR d.leased_until < %(now)s)
  AND NOT EXISTS (
      SELECT 1 FROM webhooks.deliveries p
      WHERE p.endpoint_id = d.endpoint_id AND p.sequence_key = d.sequence_key
        AND p.state = 'pending' AND (p.position, p.message_id) < (d.position, d.message_id))
ORDER BY d.next_attempt_at, d.position
LIMIT %(limit)s
"""


@dataclass(frozen=True)
class DueDelivery:
    id: uuid.UUID
    endpoint_id: uuid.UUID


async def due(conn: Conn, *, now: datetime, limit: int) -> list[DueDelivery]:
    cur = await conn.execute(_DUE, {"now": now, "limit": limit})
    return [DueDelivery(row["id"], row["endpoint_id"]) for row in await cur.fetchall()]


async def lease(
    conn: Conn, ids: Sequence[uuid.UUID], *, now: datetime, seconds: float
) -> list[dict[str, Any]]:
    """Take the deliveries for `seconds` (those another sender took first are left out), with
    what sending them needs."""
    if not ids:
        return []
    cur = await conn.execute(
        "UPDATE webhooks.deliveries d SET leased_until = %(until)s"
        " FROM webhooks.endpoints e"
        " WHERE d.id = ANY(%(ids)s) AND e.id = d.endpoint_id AND d.state = 'pending'"
        " AND (d.leased_until IS NULL OR d.leased_until < %(now)s)"
        " RETURNING d.id, d.endpoint_id, d.organization_id, d.message_id, d.event_type,"
        " d.call_id, d.batch_id, d.payload, d.data_pending, d.attempts, d.first_attempt_at,"
        " e.url, e.secret_sealed, e.previous_secret_sealed, e.previous_secret_expires_at",
        {"ids": list(ids), "now": now, "until": now + timedelta(seconds=seconds)},
    )
    return await cur.fetchall()


async def fill_data(conn: Conn, delivery_id: uuid.UUID, data: dict[str, Any] | None) -> None:
    await conn.execute(
        "UPDATE webhooks.deliveries SET payload = jsonb_set(payload, '{data}', %s::jsonb),"
        " data_pending = false WHERE id = %s",
        (json.dumps(data), delivery_id),
    )


async def postpone(conn: Conn, delivery_id: uuid.UUID, until: datetime, reason: str) -> None:
    """Put a delivery off without an attempt (what it needs was not available)."""
    await conn.execute(
        "UPDATE webhooks.deliveries SET next_attempt_at = %s, leased_until = NULL,"
        " last_error = %s WHERE id = %s",
        (until, reason, delivery_id),
    )


@dataclass(frozen=True)
class Attempt:
    at: datetime
    status: int | None
    latency_ms: int
    excerpt: str | None
    error: str | None


async def record_attempt(
    conn: Conn,
    delivery_id: uuid.UUID,
    number: int,
    attempt: Attempt,
    *,
    state: str,
    next_attempt_at: datetime | None,
    error: str | None,
) -> None:
    await conn.execute(
        # (the delivery may be gone: its endpoint was deleted while it was being sent)
        "INSERT INTO webhooks.attempts (delivery_id, number, attempted_at, response_status,"
        " latency_ms, response_excerpt, error)"
        " SELECT id, %s, %s, %s, %s, %s, %s FROM webhooks.deliveries WHERE id = %s"
        " ON CONFLICT DO NOTHING",
        (
            number,
            attempt.at,
            attempt.status,
            attempt.latency_ms,
            attempt.excerpt,
            attempt.error,
            delivery_id,
        ),
    )
    await conn.execute(
        "UPDATE webhooks.deliveries SET attempts = %(number)s,"
        " first_attempt_at = coalesce(first_attempt_at, %(at)s), last_attempt_at = %(at)s,"
        " leased_until = NULL, state = %(state)s,"
        " next_attempt_at = coalesce(%(next)s, next_attempt_at), last_error = %(error)s,"
        " completed_at = CASE WHEN %(state)s = 'pending' THEN NULL ELSE %(at)s END"
        " WHERE id = %(id)s",
        {
            "number": number,
            "at": attempt.at,
            "state": state,
            "next": next_attempt_at,
            "error": error,
            "id": delivery_id,
        },
    )


async def prune_finished(conn: Conn, *, finished_before: datetime, limit: int) -> int:
    """Delete up to `limit` deliveries that finished (delivered or given up) before
    `finished_before`, the oldest first, with their attempts; return how many. Pending ones are
    never deleted, however old; rows another replica is deleting are skipped."""
    cur = await conn.execute(
        "DELETE FROM webhooks.deliveries WHERE id IN ("
        " SELECT id FROM webhooks.deliveries"
        " WHERE state <> 'pending' AND completed_at < %s"
        " ORDER BY completed_at LIMIT %s FOR UPDATE SKIP LOCKED)",
        (finished_before, limit),
    )
    return cur.rowcount


async def prune_replays(conn: Conn, *, finished_before: datetime) -> int:
    """Delete the replays that were done before `finished_before`; return how many."""
    cur = await conn.execute(
        "DELETE FROM webhooks.replays WHERE state = 'done' AND finished_at < %s",
        (finished_before,),
    )
    return cur.rowcount


async def endpoint_failing_since(conn: Conn, endpoint_id: uuid.UUID) -> datetime | None:
    cur = await conn.execute(
        "SELECT failing_since FROM webhooks.endpoints WHERE id = %s FOR UPDATE", (endpoint_id,)
    )
    row = await cur.fetchone()
    return row["failing_since"] if row else None


async def endpoint_succeeded(conn: Conn, endpoint_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE webhooks.endpoints SET failing_since = NULL"
        " WHERE id = %s AND failing_since IS NOT NULL",
        (endpoint_id,),
    )


async def endpoint_failed(
    conn: Conn, endpoint_id: uuid.UUID, at: datetime, *, disable_reason: str | None
) -> None:
    await conn.execute(
        "UPDATE webhooks.endpoints SET failing_since = coalesce(failing_since, %(at)s),"
        " enabled = CASE WHEN %(reason)s::text IS NULL THEN enabled ELSE false END,"
        " disabled_reason = coalesce(%(reason)s, disabled_reason),"
        " disabled_at = CASE WHEN %(reason)s::text IS NULL THEN disabled_at ELSE %(at)s END"
        " WHERE id = %(id)s",
        {"at": at, "reason": disable_reason, "id": endpoint_id},
    )


# --- the delivery log -------------------------------------------------------------------------


def delivery_view(row: dict[str, Any], attempts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "endpoint_id": str(row["endpoint_id"]),
        "message_id": row["message_id"],
        "event_type": row["event_type"],
        "call_id": str(row["call_id"]) if row["call_id"] else None,
        "batch_id": row["batch_id"],
        "status": row["state"],
        "attempt_count": row["attempts"],
        "next_attempt_at": _iso(row["next_attempt_at"]) if row["state"] == PENDING else None,
        "last_error": row["last_error"],
        "created_at": _iso(row["created_at"]),
        "completed_at": _iso(row["completed_at"]),
        "payload": row["payload"],
        "attempts": [
            {
                "number": a["number"],
                "attempted_at": _iso(a["attempted_at"]),
                "response_status": a["response_status"],
                "latency_ms": a["latency_ms"],
                "response_body_excerpt": a["response_excerpt"],
                "error": a["error"],
            }
            for a in attempts
        ],
    }


_DELIVERY_COLUMNS = (
    "id, endpoint_id, message_id, event_type, call_id, batch_id, state, attempts,"
    " next_attempt_at, last_error, created_at, completed_at, payload"
)


async def list_deliveries(
    conn: Conn,
    endpoint_id: uuid.UUID,
    *,
    status: str | None,
    event_type: str | None,
    call_id: uuid.UUID | None,
    page: int,
    page_size: int,
) -> tuple[list[dict[str, Any]], int]:
    """A page of the endpoint's deliveries, newest first, each with its attempts; and the
    total matching."""
    where = ["endpoint_id = %(endpoint)s"]
    params: dict[str, Any] = {"endpoint": endpoint_id}
    if status is not None:
        where.append("state = %(status)s")
        params["status"] = status
    if event_type is not None:
        where.append("event_type = %(event_type)s")
        params["event_type"] = event_type
    if call_id is not None:
        where.append("call_id = %(call_id)s")
        params["call_id"] = call_id
    condition = " AND ".join(where)
    cur = await conn.execute(
        f"SELECT count(*) AS n FROM webhooks.deliveries WHERE {condition}", params
    )
    count = await cur.fetchone()
    cur = await conn.execute(
        f"SELECT {_DELIVERY_COLUMNS} FROM webhooks.deliveries WHERE {condition}"
        " ORDER BY created_at DESC, position DESC, id LIMIT %(limit)s OFFSET %(offset)s",
        {**params, "limit": page_size, "offset": (page - 1) * page_size},
    )
    rows = await cur.fetchall()
    attempts = await _attempts(conn, [row["id"] for row in rows])
    items = [delivery_view(row, attempts.get(row["id"], [])) for row in rows]
    return items, int(count["n"]) if count else 0


async def get_delivery(
    conn: Conn, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"SELECT {_DELIVERY_COLUMNS} FROM webhooks.deliveries WHERE endpoint_id = %s AND id = %s",
        (endpoint_id, delivery_id),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    attempts = await _attempts(conn, [row["id"]])
    return delivery_view(row, attempts.get(row["id"], []))


async def _attempts(
    conn: Conn, delivery_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    if not delivery_ids:
        return {}
    cur = await conn.execute(
        "SELECT delivery_id, number, attempted_at, response_status, latency_ms,"
        " response_excerpt, error FROM webhooks.attempts WHERE delivery_id = ANY(%s)"
        " ORDER BY delivery_id, number",
        (delivery_ids,),
    )
    out: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for row in await cur.fetchall():
        out.setdefault(row["delivery_id"], []).append(row)
    return out


async def redeliver(
    conn: Conn, endpoint_id: uuid.UUID, delivery_id: uuid.UUID, *, now: datetime
) -> bool:
    """Send a delivery again (its attempts so far stay in the log; a new retry period starts).
    One still pending is just made due now."""
    cur = await conn.execute(
        "UPDATE webhooks.deliveries SET state = 'pending', next_attempt_at = %s,"
        " first_attempt_at = NULL, completed_at = NULL, leased_until = NULL"
        " WHERE endpoint_id = %s AND id = %s",
        (now, endpoint_id, delivery_id),
    )
    await conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))
    return cur.rowcount == 1


async def requeue_messages(
    conn: Conn, endpoint_id: uuid.UUID, messages: Sequence[Message], *, now: datetime
) -> None:
    """Replayed messages: each queued for the endpoint if it never was, sent again if it was
    (a page of them in a few statements: the caller's transaction stays short)."""
    if not messages:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO webhooks.deliveries (id, endpoint_id, organization_id, message_id,"
            " event_type, sequence_key, position, call_id, batch_id, payload, data_pending,"
            " next_attempt_at, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, true, %s, %s)"
            " ON CONFLICT (endpoint_id, message_id) DO NOTHING",
            [
                (
                    uuid.uuid4(),
                    endpoint_id,
                    m.organization_id,
                    m.id,
                    m.type,
                    m.sequence_key,
                    m.position,
                    m.call_id,
                    m.batch_id,
                    json.dumps(payload(m, None)),
                    now,
                    now,
                )
                for m in messages
            ],
        )
    await conn.execute(
        "UPDATE webhooks.deliveries SET state = 'pending', next_attempt_at = %s,"
        " first_attempt_at = NULL, completed_at = NULL"
        " WHERE endpoint_id = %s AND message_id = ANY(%s) AND state <> 'pending'",
        (now, endpoint_id, [m.id for m in messages]),
    )
    await conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))


# --- backlog --------------------------------------------------------------------------------


async def backlog(conn: Conn, now: datetime) -> list[dict[str, Any]]:
    """Per endpoint: pending deliveries and the age of the oldest (for metrics and callsctl)."""
    cur = await conn.execute(
        "SELECT e.id AS endpoint_id, e.organization_id, e.url, e.enabled,"
        " count(d.id) AS pending, min(d.created_at) AS oldest"
        " FROM webhooks.endpoints e LEFT JOIN webhooks.deliveries d"
        " ON d.endpoint_id = e.id AND d.state = 'pending'"
        " GROUP BY e.id ORDER BY e.organization_id, e.created_at"
    )
    rows = await cur.fetchall()
    for row in rows:
        oldest = row["oldest"]
        row["oldest_age_seconds"] = (now - oldest).total_seconds() if oldest else 0.0
    return rows


# --- replays ----------------------------------------------------------------------------------

_REPLAY_COLUMNS = (
    "id, endpoint_id, organization_id, since, state, cursor_transaction_id::text AS cursor_tx,"
    " cursor_position, until_transaction_id::text AS until_tx, until_position, queued,"
    " created_at, finished_at"
)


@dataclass(frozen=True)
class ReplayRow:
    id: uuid.UUID
    endpoint_id: uuid.UUID
    organization_id: str
    since: datetime
    state: str
    cursor_tx: str
    cursor_position: int
    until_tx: str
    until_position: int
    queued: int
    created_at: datetime
    finished_at: datetime | None


def replay_view(row: ReplayRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "endpoint_id": str(row.endpoint_id),
        "since": _iso(row.since),
        "status": row.state,
        "queued": row.queued,
        "created_at": _iso(row.created_at),
        "finished_at": _iso(row.finished_at),
    }


async def create_replay(
    conn: Conn,
    endpoint_id: uuid.UUID,
    organization_id: str,
    since: datetime,
    *,
    until: tuple[int, int],
    now: datetime,
) -> ReplayRow:
    """A replay of the endpoint's messages since `since`, up to the store's cursor `until`."""
    cur = await conn.execute(
        "INSERT INTO webhooks.replays (id, endpoint_id, organization_id, since,"
        " until_transaction_id, until_position, created_at)"
        f" VALUES (%s, %s, %s, %s, %s::text::xid8, %s, %s) RETURNING {_REPLAY_COLUMNS}",
        (uuid.uuid4(), endpoint_id, organization_id, since, str(until[0]), until[1], now),
    )
    row = await cur.fetchone()
    assert row is not None
    return ReplayRow(**row)


async def get_replay(conn: Conn, endpoint_id: uuid.UUID, replay_id: uuid.UUID) -> ReplayRow | None:
    cur = await conn.execute(
        f"SELECT {_REPLAY_COLUMNS} FROM webhooks.replays WHERE endpoint_id = %s AND id = %s",
        (endpoint_id, replay_id),
    )
    row = await cur.fetchone()
    return ReplayRow(**row) if row else None


async def lease_replay(
    conn: Conn, token: uuid.UUID, *, now: datetime, seconds: float
) -> ReplayRow | None:
    """Take the oldest running replay no replica holds (or whose holder's lease ran out),
    under `token`."""
    cur = await conn.execute(
        "UPDATE webhooks.replays SET leased_until = %(until)s, lease_token = %(token)s"
        " WHERE id = ("
        " SELECT id FROM webhooks.replays"
        " WHERE state = 'running' AND (leased_until IS NULL OR leased_until < %(now)s)"
        " ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
        f" RETURNING {_REPLAY_COLUMNS}",
        {"now": now, "until": now + timedelta(seconds=seconds), "token": token},
    )
    row = await cur.fetchone()
    return ReplayRow(**row) if row else None


async def replay_progressed(
    conn: Conn,
    replay_id: uuid.UUID,
    token: uuid.UUID,
    *,
    cursor: tuple[int, int],
    queued: int,
    leased_until: datetime,
    done_at: datetime | None = None,
) -> bool:
    """The replay's messages up to `cursor` are queued (in the caller's transaction, with
    them); its lease goes on, or it is done (`done_at`). False, and nothing saved, when the
    lease is no longer `token`'s: another replica took it over (the caller rolls back)."""
    cur = await conn.execute(
        "UPDATE webhooks.replays SET cursor_transaction_id = %s::text::xid8,"
        " cursor_position = %s, queued = queued + %s, leased_until = %s,"
        " state = CASE WHEN %s::timestamptz IS NULL THEN state ELSE 'done' END,"
        " finished_at = %s WHERE id = %s AND lease_token = %s AND state = 'running'",
        (
            str(cursor[0]),
            cursor[1],
            queued,
            None if done_at else leased_until,
            done_at,
            done_at,
            replay_id,
            token,
        ),
    )
    return cur.rowcount == 1
