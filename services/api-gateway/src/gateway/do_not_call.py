"""An organization's do-not-call list (PUT/DELETE /do-not-call/{number}, GET /do-not-call).

The gateway keeps the list for its reads, and announces every change as an event on the
organization's `do-not-call-<org>` stream, in the same transaction: the dialer, which checks
the list when it is about to dial, keeps its own copy from those events.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from calls_events import E164, DoNotCallAdded, DoNotCallRemoved, Envelope, Event, do_not_call_stream
from calls_platform import eventstore
from calls_platform.db import Conn
from calls_platform.http import (
    CORRELATION_KEY,
    BadRequest,
    invalid,
    json_error,
    parse_body,
)
from calls_platform.metrics import EVENTS_APPENDED
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .campaign_models import DoNotCallBody
from .context import POOL, principal

_NUMBER = re.compile(E164)


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    page: int = Field(default=1, ge=1, le=1_000_000)
    page_size: int = Field(default=50, ge=1, le=500)


def _number(request: web.Request) -> str:
    """The number in the path; one that is not E.164 names nothing that can be listed: 404
    (as a malformed batch or call id is)."""
    number = request.match_info["number"]
    if not _NUMBER.match(number):
        raise BadRequest(
            json_error(
                404,
                "not_found",
                "not a phone number: use E.164, e.g. +14155550100 (%2B for the + in a URL)",
            )
        )
    return number


async def _announce(conn: Conn, request: web.Request, event: Event) -> None:
    org = principal(request).organization_id
    await eventstore.append(
        conn,
        [
            Envelope.wrap(
                event,
                stream_id=do_not_call_stream(org),
                organization_id=org,
                correlation_id=request[CORRELATION_KEY],
            )
        ],
    )
    EVENTS_APPENDED.labels(event.TYPE).inc()


def _item(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "number": row["number"],
        "reason": row["reason"],
        "added_at": row["added_at"].isoformat(),
    }


async def add_number(request: web.Request) -> web.Response:
    number = _number(request)
    body = await parse_body(request, DoNotCallBody) if request.can_read_body else DoNotCallBody()
    who = principal(request)
    async with request.app[POOL].connection() as conn, conn.transaction():
        cur = await conn.execute(
            "INSERT INTO gateway.do_not_call (organization_id, number, reason, added_by)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING number, reason, added_at",
            (who.organization_id, number, body.reason, who.subject),
        )
        row = await cur.fetchone()
        if row is not None:
            await _announce(
                conn,
                request,
                DoNotCallAdded(number=number, reason=body.reason, requested_by=who.subject),
            )
            return web.json_response(_item(row), status=201)
        cur = await conn.execute(
            "SELECT number, reason, added_at FROM gateway.do_not_call"
            " WHERE organization_id = %s AND number = %s",
            (who.organization_id, number),
        )
        existing = await cur.fetchone()
    assert existing is not None
    return web.json_response(_item(existing))  # already listed: nothing changes


async def remove_number(request: web.Request) -> web.Response:
    number = _number(request)
    who = principal(request)
    async with request.app[POOL].connection() as conn, conn.transaction():
        cur = await conn.execute(
            "DELETE FROM gateway.do_not_call WHERE organization_id = %s AND number = %s"
            " RETURNING number",
            (who.organization_id, number),
        )
        if await cur.fetchone() is None:
            return json_error(404, "not_found", "number not on the do-not-call list")
        await _announce(conn, request, DoNotCallRemoved(number=number, requested_by=who.subject))
    return web.Response(status=204)


async def list_numbers(request: web.Request) -> web.Response:
    try:
        q = PageQuery.model_validate(dict(request.query))
    except ValidationError as exc:
        return invalid(exc, "invalid query").response
    org = principal(request).organization_id
    async with request.app[POOL].connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM gateway.do_not_call WHERE organization_id = %s", (org,)
        )
        total = await cur.fetchone()
        cur = await conn.execute(
            "SELECT number, reason, added_at FROM gateway.do_not_call WHERE organization_id = %s"
            " ORDER BY added_at DESC, number LIMIT %s OFFSET %s",
            (org, q.page_size, (q.page - 1) * q.page_size),
        )
        rows = await cur.fetchall()
    return web.json_response(
        {
            "items": [_item(row) for row in rows],
            "total": int(total["n"]) if total else 0,
            "page": q.page,
            "page_size": q.page_size,
        }
    )
