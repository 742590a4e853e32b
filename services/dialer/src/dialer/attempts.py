"""Step 5 of a call's path: what became of a dial attempt. Placed (`initiated`, its SID, once
whoever learns it first: the dial, a callback or reconciliation), refused (`failed`), not sent
(back in line after a delay), or ambiguous: still `dialing`, until reconciliation finds it at
the carrier, dials it again once, or gives up."""

from __future__ import annotations

import uuid

from calls_events import CallFailed, CallInitiated
from calls_platform.db import Conn

from . import dials
from .dials import DIAL_COLUMNS, Dial


async def mark_initiated(conn: Conn, call_id: uuid.UUID, call_sid: str, source: str) -> bool:
    """The carrier has the call: record its SID (once, whoever learns it first)."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE dialer.dials SET state = 'initiated', call_sid = %s, finished_at = now()"
            f" WHERE call_id = %s AND state = 'dialing' RETURNING {DIAL_COLUMNS}",
            (call_sid, call_id),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        event = CallInitiated(call_id=call_id, call_sid=call_sid, source=source)
        await dials.append(conn, [(row, event)], "initiated")
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
            f" RETURNING {DIAL_COLUMNS}",
            (code, message, call_id),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        event = CallFailed(
            call_id=call_id, error_code=code, error_message=message, http_status=http_status
        )
        await dials.append(conn, [(row, event)], "failed")
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
        f"SELECT {DIAL_COLUMNS} FROM dialer.dials WHERE state = 'dialing' ORDER BY dial_started_at"
    )
    return [Dial(**row) for row in await cur.fetchall()]


async def known_sids(conn: Conn, sids: list[str]) -> set[str]:
    cur = await conn.execute("SELECT call_sid FROM dialer.dials WHERE call_sid = ANY(%s)", (sids,))
    return {row["call_sid"] for row in await cur.fetchall()}


async def redial(conn: Conn, call_id: uuid.UUID) -> bool:
    """The carrier has no trace of an ambiguous attempt: dial it again, once."""
    cur = await conn.execute(
        "UPDATE dialer.dials SET state = 'pending', redialed = true, dial_started_at = NULL,"
        " not_before = now() WHERE call_id = %s AND state = 'dialing' AND NOT redialed"
        " RETURNING call_id",
        (call_id,),
    )
    return await cur.fetchone() is not None
