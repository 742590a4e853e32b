"""Step 4 of a call's path: the claim. The next pending dial, in turn (the order is
`fairness`'s, applied here in SQL), its campaign rules applied (`campaign_store.hold`), marked
`dialing` and committed before the carrier is asked."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from calls_platform.db import Conn

from . import campaign_store, dial_queue, dials
from .dials import DIAL_COLUMNS, Dial
from .fairness import lane_key, org_key

# The dialer's sessions run without JIT compilation: the heads query is planned with a
# recursive CTE (about 100 lanes assumed) and per-lane counts priced by the whole table, so
# with the history of finished dials its estimated cost passes PostgreSQL's jit_above_cost and
# each claim was compiled first (measured by a reviewer: 450-620 ms with JIT, 3 ms without, on
# 100,000 pending and 200,000 finished dials). Nothing the dialer runs is long enough to gain.
SESSION: Final = {"jit": "off"}

# dials put off, expired or skipped by their campaign rules in one claim before it gives up
# (each in its own commit, a few milliseconds) and lets the loop wait for work
_HOLDS_PER_CLAIM: Final = 500


async def claim_next(conn: Conn, now: datetime | None = None) -> Dial | None:
    """Take the next pending dial, fairly, and mark it dialing (committed before dialing).

    Fairness is round robin: first among organizations with pending dials, then among that
    organization's lanes (each batch, and its single calls), each by least recently served
    (`fairness.next_head`). Not claimed: dials due after `now`, of a paused batch, or of a
    lane or organization at its concurrency limit (the lane's head waits). A dial whose number
    has a call of its organization in flight is passed over, keeping its place (its lane goes
    on); a head that its campaign rules hold back (window, schedule, daily cap, do-not-call) is
    put off or ended instead; then the next head is taken.
    """
    now = now or datetime.now(UTC)
    for _ in range(_HOLDS_PER_CLAIM):
        async with conn.transaction():
            head = await next_head(conn, now)
            if head is None:
                return None
            ruled = head["request"] is not None or head["daily_cap_per_number"]
            if (ruled or head["do_not_call"]) and await campaign_store.hold(conn, head, now):
                # counts as a turn: a batch whose window is closed takes turns with the calls
                # of others that can ring now, instead of keeping them waiting
                await served(conn, head)
                continue
            dial = await _claim(conn, head)
            if dial is not None:
                return dial
            # taken meanwhile, or its batch was canceled meanwhile: the next head, now (one
            # claim each every half second left a canceled batch's calls queued for long)
    return None


# The heads that may be dialed now (one per lane: its earliest request that is due and whose
# number has no call of its organization in flight), and the first of them in turn order:
# ORDER BY is fairness.turn_key (organization, then lane, least recently served first, never
# served first of all; then the earlier request). The lanes are found by skipping through the
# pending index (a recursive query, one probe per lane) and each lane's head by reading that
# lane in request order until the first that may be dialed: a few index entries per lane when
# its front dials may ring, and every dial it passes over otherwise (put off by a window, or
# to a busy number), instead of a sort of every pending dial at each claim.
_HEADS: Final = f"""
    WITH RECURSIVE lanes (lane) AS (
        (SELECT lane FROM dialer.dials WHERE state = 'pending' ORDER BY lane LIMIT 1)
        UNION ALL
        SELECT (SELECT d.lane FROM dialer.dials d
                WHERE d.state = 'pending' AND d.lane > l.lane ORDER BY d.lane LIMIT 1)
        FROM lanes l WHERE l.lane IS NOT NULL
    ),
    heads AS (
        SELECT d.* FROM lanes l CROSS JOIN LATERAL (
            SELECT call_id, lane, organization_id, requested_position, batch_index, batch_id,
                to_number, request, max_concurrency, correlation_id, requested_event_id, unopened
            FROM dialer.dials d
            WHERE d.lane = l.lane AND d.state = 'pending' AND d.not_before <= %(now)s
              AND NOT {campaign_store.number_busy("d")}
            ORDER BY d.requested_position, d.batch_index
            LIMIT 1
        ) d
        WHERE l.lane IS NOT NULL
    )
    SELECT h.call_id, h.lane, h.organization_id, h.requested_position, h.batch_index,
        h.to_number, h.request, h.correlation_id, h.requested_event_id, h.unopened,
        p.daily_cap_per_number, coalesce(n.listed, false) AS do_not_call
    FROM heads h
    LEFT JOIN dialer.calling_policies p ON p.organization_id = h.organization_id
    LEFT JOIN dialer.fairness o ON o.key = %(org_prefix)s || h.organization_id
    LEFT JOIN dialer.fairness l ON l.key = %(lane_prefix)s || h.lane
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
    ORDER BY o.last_served NULLS FIRST, l.last_served NULLS FIRST, h.requested_position,
        h.batch_index
    LIMIT 1
"""


async def next_head(conn: Conn, now: datetime) -> dict[str, Any] | None:
    """Whose turn it is (one query): the head `fairness.next_head` picks among those that
    may be dialed at `now`, with what its campaign rules need; None: nothing to dial."""
    cur = await conn.execute(
        _HEADS, {"now": now, "org_prefix": org_key(""), "lane_prefix": lane_key("")}
    )
    return await cur.fetchone()


async def served(conn: Conn, head: Mapping[str, Any]) -> None:
    """The head's organization and lane had their turn (round-robin fairness)."""
    await conn.execute(
        "INSERT INTO dialer.fairness (key, last_served)"
        " VALUES (%s, clock_timestamp()), (%s, clock_timestamp())"
        " ON CONFLICT (key) DO UPDATE SET last_served = excluded.last_served",
        (org_key(head["organization_id"]), lane_key(head["lane"])),
    )


async def _claim(conn: Conn, head: Mapping[str, Any]) -> Dial | None:
    cur = await conn.execute(
        "UPDATE dialer.dials SET state = 'dialing', attempts = attempts + 1,"
        " dial_started_at = now() WHERE call_id = %s AND state = 'pending'"
        f" RETURNING {DIAL_COLUMNS}, unopened",
        (head["call_id"],),
    )
    row = await cur.fetchone()
    await served(conn, head)
    if row is None:
        return None
    # committed with `dialing`: the carrier is asked, and may call back, only once the call's
    # request is on its stream
    await dials.open_streams(conn, [row])
    dial = Dial(**{column: value for column, value in row.items() if column != "unopened"})
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
            await dial_queue.append_canceled(conn, [dial])
            return None
    return dial
