"""Read endpoints, served from the call log's read models through its internal query API."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog
from aiohttp import web
from calls_platform.http import BadRequest, json_error

from .context import CALL_LOG, principal

log = structlog.get_logger(__name__)

BATCH_ID = re.compile(r"^batch-[0-9a-f]{32}$")


def internal_path(request: web.Request, *segments: str) -> str:
    org = principal(request).organization_id
    return "/internal/orgs/" + "/".join(quote(s, safe="") for s in (org, *segments))


def _unavailable(exc: BaseException | None = None, status: int | None = None) -> web.HTTPBadGateway:
    """The call log failed or could not be reached: the client gets a 502, never its 500."""
    log.error("call_log_unavailable", error=repr(exc) if exc else None, status=status)
    return web.HTTPBadGateway(text="call log unavailable")


def catching_up(retry_after: str = "1") -> web.Response:
    """The call log has not yet recorded what may have been accepted a moment ago (its
    read-your-writes wait ran out): retry, rather than a 404 for something that exists."""
    return json_error(
        503,
        "catching_up",
        "recent events are still being recorded; retry shortly",
        headers={"Retry-After": retry_after},
    )


def _catching_up(resp: aiohttp.ClientResponse) -> bool:
    return resp.status == 503 and "Retry-After" in resp.headers


async def _relay(request: web.Request, *segments: str) -> web.Response:
    try:
        async with request.app[CALL_LOG].get(
            internal_path(request, *segments), params=request.query
        ) as resp:
            if _catching_up(resp):
                return catching_up(resp.headers["Retry-After"])
            if resp.status >= 500:
                raise _unavailable(status=resp.status)
            body = await resp.read()
            return web.Response(body=body, status=resp.status, content_type="application/json")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _unavailable(exc) from None


async def fetch_batch(request: web.Request, batch_id: str) -> tuple[int, dict[str, Any]]:
    if not BATCH_ID.match(batch_id):
        return 404, {"error": {"code": "not_found", "message": "batch not found"}}
    try:
        async with request.app[CALL_LOG].get(internal_path(request, "batches", batch_id)) as resp:
            if _catching_up(resp):
                return 503, await resp.json()
            if resp.status >= 500:
                raise _unavailable(status=resp.status)
            return resp.status, await resp.json()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _unavailable(exc) from None


async def batch_to_change(request: web.Request, batch_id: str) -> dict[str, Any]:
    """The batch a command (cancel, pause, resume) is about, as the call log shows it; an
    unknown one, one not yet recorded, or the call log down are sent as their JSON error."""
    status, batch = await fetch_batch(request, batch_id)
    if status == 404:
        raise BadRequest(json_error(404, "not_found", "batch not found"))
    if status == 503:
        raise BadRequest(catching_up())
    if status != 200:
        raise _unavailable(status=status)
    return batch


async def list_calls(request: web.Request) -> web.Response:
    return await _relay(request, "calls")


async def get_call(request: web.Request) -> web.Response:
    call_id = request.match_info["call_id"]
    try:
        uuid.UUID(call_id)
    except ValueError:
        return json_error(404, "not_found", "call not found")
    return await _relay(request, "calls", call_id)


async def get_batch(request: web.Request) -> web.Response:
    batch_id = request.match_info["batch_id"]
    if not BATCH_ID.match(batch_id):
        return json_error(404, "not_found", "batch not found")
    # relayed as bytes: a 10,000-call batch is not parsed and re-encoded on the way through
    return await _relay(request, "batches", batch_id)
