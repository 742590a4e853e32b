"""An organization's calling policy (PUT/GET /calling-policy): the default calling window of
calls that set none (copied into each call's request when it is accepted; read there with the
caller ID, `agents.call_facts`), the
organization-wide concurrency limit and the per-number daily cap (applied by the dialer, which
learns them from CallingPolicySet)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from calls_events import CallingPolicySet, Envelope, calling_policy_stream
from calls_platform import eventstore
from calls_platform.db import Conn
from calls_platform.http import CORRELATION_KEY, parse_body
from calls_platform.metrics import EVENTS_APPENDED

from .campaign_models import CallingPolicyBody
from .context import POOL, principal


async def _policy(conn: Conn, organization_id: str) -> dict[str, Any] | None:
    cur = await conn.execute(
        "SELECT window_rules, max_concurrency, daily_cap_per_number, updated_at"
        " FROM gateway.calling_policies WHERE organization_id = %s",
        (organization_id,),
    )
    return await cur.fetchone()


def _view(row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None:
        return {"window": None, "max_concurrency": None, "daily_cap_per_number": None}
    return {
        "window": row["window_rules"],
        "max_concurrency": row["max_concurrency"],
        "daily_cap_per_number": row["daily_cap_per_number"],
    }


async def put_calling_policy(request: web.Request) -> web.Response:
    body = await parse_body(request, CallingPolicyBody)
    who = principal(request)
    window = body.window.model_dump(mode="json") if body.window else None
    async with request.app[POOL].connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO gateway.calling_policies (organization_id, window_rules, max_concurrency,"
            " daily_cap_per_number) VALUES (%s, %s, %s, %s) ON CONFLICT (organization_id)"
            " DO UPDATE SET window_rules = excluded.window_rules,"
            " max_concurrency = excluded.max_concurrency,"
            " daily_cap_per_number = excluded.daily_cap_per_number, updated_at = now()",
            (
                who.organization_id,
                json.dumps(window) if window else None,
                body.max_concurrency,
                body.daily_cap_per_number,
            ),
        )
        event = CallingPolicySet(
            window=body.window,
            max_concurrency=body.max_concurrency,
            daily_cap_per_number=body.daily_cap_per_number,
            requested_by=who.subject,
        )
        envelope = Envelope.wrap(
            event,
            stream_id=calling_policy_stream(who.organization_id),
            organization_id=who.organization_id,
            correlation_id=request[CORRELATION_KEY],
        )
        await eventstore.append(conn, [envelope])
        row = await _policy(conn, who.organization_id)
    EVENTS_APPENDED.labels(CallingPolicySet.TYPE).inc()
    return web.json_response(_view(row))


async def get_calling_policy(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        row = await _policy(conn, principal(request).organization_id)
    return web.json_response(_view(row))
