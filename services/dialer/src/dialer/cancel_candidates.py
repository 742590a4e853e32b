"""Cancels at the carrier (a canceled batch's placed calls not yet answered, calls kept
`queued` too long): which placed calls may need one, and the carrier's answer to it, kept so
that each call is asked once. What to do with each is decided by the pure `carrier_cancel`;
the canceler (`canceler.py`) asks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from calls_platform.db import Conn

from .carrier_cancel import NOT_ANSWERED
from .statuses import sql_list


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
        # the predicate of the dials_cancel_candidates index, as it reads there
        f" AND (d.carrier_status IS NULL OR d.carrier_status IN {sql_list(NOT_ANSWERED)})"
        " AND (b.batch_id IS NOT NULL"
        "      OR ((d.carrier_status IS NULL OR d.carrier_status = %(queued)s)"
        "          AND d.finished_at <= now() - make_interval(secs => %(limit_seconds)s)))"
        " ORDER BY d.finished_at LIMIT %(limit)s",
        {"queued": "queued", "limit_seconds": queue_limit_seconds, "limit": limit},
    )
    return [CancelCandidate(**row) for row in await cur.fetchall()]


async def note_carrier_cancel(conn: Conn, call_id: uuid.UUID, result: str) -> None:
    """The carrier answered a cancel (`canceled` or `refused`): it is never asked again."""
    await conn.execute(
        "UPDATE dialer.dials SET carrier_cancel = %s WHERE call_id = %s AND carrier_cancel IS NULL",
        (result, call_id),
    )
