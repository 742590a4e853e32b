"""Webhook endpoints (`/webhook-endpoints`): validated here, served by the webhooks service
through its internal API (`WEBHOOKS_URL`), as reads are served by the call log. Every route
needs the `webhooks:manage` scope (a JWT has it; an API key only if it was given it)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Final

import aiohttp
import structlog
from aiohttp import web
from calls_platform.http import json_error, parse_body, unprocessable
from pydantic import BaseModel

from .context import WEBHOOKS
from .models import CreateWebhookEndpoint, ReplayWebhooks, UpdateWebhookEndpoint
from .reads import internal_path

log = structlog.get_logger(__name__)

PREFIX: Final = "/webhook-endpoints"


def setup_routes(app: web.Application) -> None:
    r = app.router
    one = PREFIX + "/{endpoint_id}"
    r.add_post(PREFIX, create_endpoint)
    r.add_get(PREFIX, list_endpoints)
    r.add_get(one, _of_endpoint("GET"))
    r.add_patch(one, update_endpoint)
    r.add_delete(one, _of_endpoint("DELETE"))
    r.add_post(one + "/rotate-secret", _of_endpoint("POST", "rotate-secret"))
    r.add_post(one + "/test", _of_endpoint("POST", "test"))
    r.add_get(one + "/deliveries", _of_endpoint("GET", "deliveries"))
    r.add_post(one + "/deliveries/{delivery_id}/redeliver", redeliver)
    r.add_post(one + "/replay", replay)
    r.add_get(one + "/replays/{replay_id}", get_replay)


def _unavailable(exc: BaseException | None = None, status: int | None = None) -> web.HTTPBadGateway:
    log.error("webhooks_service_unavailable", error=repr(exc) if exc else None, status=status)
    return web.HTTPBadGateway(text="webhooks service unavailable")


async def _relay(
    request: web.Request, method: str, *segments: str, body: BaseModel | None = None
) -> web.Response:
    path = internal_path(request, "webhook-endpoints", *segments)
    json = body.model_dump(mode="json", exclude_unset=True) if body is not None else None
    try:
        async with request.app[WEBHOOKS].request(
            method, path, params=request.query, json=json
        ) as resp:
            if resp.status >= 500:
                raise _unavailable(status=resp.status)
            if resp.status == 204:
                return web.Response(status=204)
            return web.Response(
                body=await resp.read(), status=resp.status, content_type="application/json"
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _unavailable(exc) from None


def _id(request: web.Request, name: str) -> str | None:
    try:
        return str(uuid.UUID(request.match_info[name]))
    except ValueError:
        return None


def _not_found(what: str = "webhook endpoint") -> web.Response:
    return json_error(404, "not_found", f"{what} not found")


async def create_endpoint(request: web.Request) -> web.Response:
    body = await parse_body(request, CreateWebhookEndpoint)
    return await _relay(request, "POST", body=body)


async def list_endpoints(request: web.Request) -> web.Response:
    return await _relay(request, "GET")


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _of_endpoint(method: str, *tail: str) -> Handler:
    """A route about one endpoint that takes no body: its id checked, relayed as it is."""

    async def handler(request: web.Request) -> web.Response:
        endpoint_id = _id(request, "endpoint_id")
        if endpoint_id is None:
            return _not_found()
        return await _relay(request, method, endpoint_id, *tail)

    return handler


async def update_endpoint(request: web.Request) -> web.Response:
    endpoint_id = _id(request, "endpoint_id")
    if endpoint_id is None:
        return _not_found()
    body = await parse_body(request, UpdateWebhookEndpoint)
    for field in ("url", "events", "enabled"):
        if field in body.model_fields_set and getattr(body, field) is None:
            raise unprocessable("invalid request body", field, "must not be null")
    if not body.model_fields_set:
        raise unprocessable(
            "nothing to change", "body", "name at least one of url, events, description, enabled"
        )
    return await _relay(request, "PATCH", endpoint_id, body=body)


async def redeliver(request: web.Request) -> web.Response:
    endpoint_id = _id(request, "endpoint_id")
    delivery_id = _id(request, "delivery_id")
    if endpoint_id is None:
        return _not_found()
    if delivery_id is None:
        return _not_found("delivery")
    return await _relay(request, "POST", endpoint_id, "deliveries", delivery_id, "redeliver")


async def replay(request: web.Request) -> web.Response:
    endpoint_id = _id(request, "endpoint_id")
    if endpoint_id is None:
        return _not_found()
    body = await parse_body(request, ReplayWebhooks)
    return await _relay(request, "POST", endpoint_id, "replay", body=body)


async def get_replay(request: web.Request) -> web.Response:
    endpoint_id = _id(request, "endpoint_id")
    replay_id = _id(request, "replay_id")
    if endpoint_id is None:
        return _not_found()
    if replay_id is None:
        return _not_found("replay")
    return await _relay(request, "GET", endpoint_id, "replays", replay_id)
