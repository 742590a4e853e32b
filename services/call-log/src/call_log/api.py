"""The call log's internal query API, called by the gateway with an organization in the path.

Not exposed outside the cluster (the NetworkPolicy lets only the gateway in). Before each read
it waits until the projection has caught up with every event committed so far, so a client
that just got a 202 from the gateway reads its own write (no 404 window).
"""

from __future__ import annotations

import asyncio
import time
import uuid

from aiohttp import web
from calls_platform.db import Conn, Pool
from calls_platform.http import json_error
from pydantic import ValidationError

from . import queries
from .projector import projected_and_head

POOL: web.AppKey[Pool] = web.AppKey("pool")
READ_WAIT: web.AppKey[float] = web.AppKey("read_wait_seconds")


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/internal/orgs/{org}/calls", list_calls)
    app.router.add_get("/internal/orgs/{org}/calls/{call_id}", get_call)
    app.router.add_get("/internal/orgs/{org}/batches/{batch_id}", get_batch)


async def _caught_up(app: web.Application, conn: Conn) -> bool:
    """Wait (bounded) until every event committed before this read is projected; False if
    the wait ran out first."""
    deadline = time.monotonic() + app[READ_WAIT]
    projected, target = await projected_and_head(conn)
    while projected < target and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
        projected, _ = await projected_and_head(conn)
    return projected >= target


def _not_yet_or_not_found(caught_up: bool, what: str) -> web.Response:
    """A row that is missing while the projection is still behind may be one accepted a moment
    ago: 'not found' would be wrong, so the reader is asked to retry (503, Retry-After)."""
    if caught_up:
        return json_error(404, "not_found", f"{what} not found")
    return json_error(
        503,
        "catching_up",
        f"the call log is still recording recent events; retry for this {what} shortly",
        headers={"Retry-After": "1"},
    )


def _validation_error(exc: ValidationError) -> web.Response:
    details = [
        {"field": ".".join(str(p) for p in err["loc"]) or "query", "message": err["msg"]}
        for err in exc.errors()
    ]
    return json_error(422, "validation_error", "invalid query parameters", details)


async def list_calls(request: web.Request) -> web.Response:
    try:
        query = queries.ListQuery.model_validate(dict(request.query))
    except ValidationError as exc:
        return _validation_error(exc)
    async with request.app[POOL].connection() as conn:
        await _caught_up(request.app, conn)
        page = await queries.list_calls(conn, request.match_info["org"], query)
    return web.json_response(page)


async def get_call(request: web.Request) -> web.Response:
    try:
        call_id = uuid.UUID(request.match_info["call_id"])
    except ValueError:
        return json_error(404, "not_found", "call not found")
    async with request.app[POOL].connection() as conn:
        caught_up = await _caught_up(request.app, conn)
        call = await queries.get_call(conn, request.match_info["org"], call_id)
    if call is None:
        return _not_yet_or_not_found(caught_up, "call")
    return web.json_response(call)


async def get_batch(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        caught_up = await _caught_up(request.app, conn)
        batch = await queries.get_batch(
            conn, request.match_info["org"], request.match_info["batch_id"]
        )
    if batch is None:
        return _not_yet_or_not_found(caught_up, "batch")
    return web.json_response(batch)
