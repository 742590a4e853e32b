"""The webhooks service's internal API, called by the gateway with the organization in the
path (like the call log's): endpoints, their delivery log, redelivery, replay, and a test
message. Not exposed outside the cluster; the gateway authenticates and checks the scope."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import aiohttp
import structlog
from aiohttp import web
from calls_events import WEBHOOK_EVENT_TYPES, WebhookEventType
from calls_platform.db import Pool
from calls_platform.http import BadRequest, invalid, json_error, parse_body, unprocessable
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from . import history, signing, store
from .sender import body_of, post, signing_secrets
from .urls import SafeResolver, UnsafeUrl, check_url

log = structlog.get_logger(__name__)

TEST_EVENT_TYPE = "webhook.test"


@dataclass(frozen=True)
class Config:
    pool: Pool
    box: signing.SecretBox
    resolver: SafeResolver
    allow_private: bool
    rotation_grace: timedelta
    clock: Callable[[], datetime]
    # the session deliveries go out through (the test message too)
    http: aiohttp.ClientSession
    excerpt_bytes: int = 1024


CONFIG: web.AppKey[Config] = web.AppKey("webhooks_config")

Url = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
Events = Annotated[list[WebhookEventType], Field(min_length=1, max_length=len(WEBHOOK_EVENT_TYPES))]
Description = Annotated[str, StringConstraints(max_length=500)]


class CreateEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Url
    events: Events
    description: Description | None = None


class UpdateEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Url | None = None
    events: Events | None = None
    description: Description | None = None
    enabled: bool | None = None


class Replay(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: AwareDatetime


class DeliveryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Annotated[str, StringConstraints(pattern="^(pending|delivered|failed)$")] | None = None
    event_type: WebhookEventType | None = None
    call_id: uuid.UUID | None = None
    page: int = Field(default=1, ge=1, le=100_000)
    page_size: int = Field(default=20, ge=1, le=100)


def setup_routes(app: web.Application) -> None:
    base = "/internal/orgs/{org}/webhook-endpoints"
    r = app.router
    r.add_post(base, create_endpoint)
    r.add_get(base, list_endpoints)
    r.add_get(base + "/{endpoint_id}", get_endpoint)
    r.add_patch(base + "/{endpoint_id}", update_endpoint)
    r.add_delete(base + "/{endpoint_id}", delete_endpoint)
    r.add_post(base + "/{endpoint_id}/rotate-secret", rotate_secret)
    r.add_post(base + "/{endpoint_id}/test", send_test)
    r.add_get(base + "/{endpoint_id}/deliveries", list_deliveries)
    r.add_post(base + "/{endpoint_id}/deliveries/{delivery_id}/redeliver", redeliver)
    r.add_post(base + "/{endpoint_id}/replay", replay)
    r.add_get(base + "/{endpoint_id}/replays/{replay_id}", get_replay)


def _refused_url(exc: UnsafeUrl) -> BadRequest:
    return unprocessable(str(exc), "url", str(exc))


def _endpoint_id(request: web.Request) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.match_info["endpoint_id"])
    except ValueError:
        return None


def _not_found() -> web.Response:
    return json_error(404, "not_found", "webhook endpoint not found")


async def _endpoint(request: web.Request) -> dict[str, Any]:
    """The endpoint the path names, in the path's organization; else a 404 (sent by
    error_middleware, like every other refusal that ends a handler early)."""
    endpoint_id = _endpoint_id(request)
    row = None
    if endpoint_id is not None:
        async with request.app[CONFIG].pool.connection() as conn:
            row = await store.get_endpoint(conn, request.match_info["org"], endpoint_id)
    if row is None:
        raise BadRequest(_not_found())
    return row


async def create_endpoint(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    body = await parse_body(request, CreateEndpoint)
    try:
        await check_url(body.url, config.resolver, allow_private=config.allow_private)
    except UnsafeUrl as exc:
        raise _refused_url(exc) from None
    secret = signing.new_secret()
    now = config.clock()
    async with config.pool.connection() as conn:
        row = await store.create_endpoint(
            conn,
            organization_id=request.match_info["org"],
            url=body.url,
            events=sorted(set(body.events), key=WEBHOOK_EVENT_TYPES.index),
            description=body.description,
            secret_sealed=config.box.seal(secret),
            now=now,
        )
    log.info("webhook_endpoint_created", endpoint_id=str(row["id"]))
    return web.json_response({**store.endpoint_view(row, now), "secret": secret}, status=201)


async def list_endpoints(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    async with config.pool.connection() as conn:
        rows = await store.list_endpoints(conn, request.match_info["org"])
    now = config.clock()
    return web.json_response({"items": [store.endpoint_view(row, now) for row in rows]})


async def get_endpoint(request: web.Request) -> web.Response:
    row = await _endpoint(request)
    return web.json_response(store.endpoint_view(row, request.app[CONFIG].clock()))


async def update_endpoint(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    endpoint_id = _endpoint_id(request)
    if endpoint_id is None:
        return _not_found()
    body = await parse_body(request, UpdateEndpoint)
    changes = body.model_dump(exclude_unset=True)
    for field in ("url", "events", "enabled"):
        if field in changes and changes[field] is None:
            raise unprocessable("invalid request body", field, "must not be null")
    if not changes:
        raise unprocessable(
            "nothing to change", "body", "name at least one of url, events, description, enabled"
        )
    if "url" in changes:
        try:
            await check_url(changes["url"], config.resolver, allow_private=config.allow_private)
        except UnsafeUrl as exc:
            raise _refused_url(exc) from None
    if "events" in changes:
        changes["events"] = sorted(set(changes["events"]), key=WEBHOOK_EVENT_TYPES.index)
    now = config.clock()
    async with config.pool.connection() as conn:
        row = await store.update_endpoint(
            conn, request.match_info["org"], endpoint_id, changes, now=now
        )
        if row is not None and changes.get("enabled") is True:
            await conn.execute("SELECT pg_notify(%s, '')", (store.NOTIFY_CHANNEL,))
    if row is None:
        return _not_found()
    return web.json_response(store.endpoint_view(row, now))


async def delete_endpoint(request: web.Request) -> web.Response:
    endpoint_id = _endpoint_id(request)
    if endpoint_id is None:
        return _not_found()
    async with request.app[CONFIG].pool.connection() as conn:
        deleted = await store.delete_endpoint(conn, request.match_info["org"], endpoint_id)
    if not deleted:
        return _not_found()
    return web.Response(status=204)


async def rotate_secret(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    endpoint_id = _endpoint_id(request)
    if endpoint_id is None:
        return _not_found()
    secret = signing.new_secret()
    now = config.clock()
    async with config.pool.connection() as conn:
        row = await store.rotate_secret(
            conn,
            request.match_info["org"],
            endpoint_id,
            secret_sealed=config.box.seal(secret),
            grace=config.rotation_grace,
            now=now,
        )
    if row is None:
        return _not_found()
    log.info("webhook_secret_rotated", endpoint_id=str(endpoint_id))
    return web.json_response({**store.endpoint_view(row, now), "secret": secret})


async def send_test(request: web.Request) -> web.Response:
    """Send one signed `webhook.test` message now and say how the endpoint answered (not
    queued, not retried, not in the delivery log)."""
    config = request.app[CONFIG]
    endpoint_id = _endpoint_id(request)
    if endpoint_id is None:
        return _not_found()
    async with config.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT url, secret_sealed, previous_secret_sealed, previous_secret_expires_at"
            " FROM webhooks.endpoints WHERE organization_id = %s AND id = %s",
            (request.match_info["org"], endpoint_id),
        )
        row = await cur.fetchone()
    if row is None:
        return _not_found()
    now = config.clock()
    message_id = "msg_" + uuid.uuid4().hex
    body = body_of(
        {
            "id": message_id,
            "type": TEST_EVENT_TYPE,
            "created_at": now.isoformat().replace("+00:00", "Z"),
            "data": {"endpoint_id": str(endpoint_id), "message": "a test message"},
        }
    )
    headers = signing.headers(message_id, body, now, signing_secrets(row, config.box, now))
    response = await post(config.http, row["url"], body, headers, config.excerpt_bytes)
    return web.json_response(
        {
            "message_id": message_id,
            "delivered": response.status is not None and 200 <= response.status < 300,
            "response_status": response.status,
            "latency_ms": response.latency_ms,
            "response_body_excerpt": response.excerpt,
            "error": response.error,
        }
    )


async def list_deliveries(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    row = await _endpoint(request)
    try:
        query = DeliveryQuery.model_validate(dict(request.query))
    except ValidationError as exc:
        # as the gateway relays it to the customer: no values echoed
        raise invalid(exc, "invalid query parameters", values=False) from None
    async with config.pool.connection() as conn:
        items, total = await store.list_deliveries(
            conn,
            row["id"],
            status=query.status,
            event_type=query.event_type,
            call_id=query.call_id,
            page=query.page,
            page_size=query.page_size,
        )
    return web.json_response(
        {"items": items, "total": total, "page": query.page, "page_size": query.page_size}
    )


async def redeliver(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    row = await _endpoint(request)
    try:
        delivery_id = uuid.UUID(request.match_info["delivery_id"])
    except ValueError:
        return json_error(404, "not_found", "delivery not found")
    async with config.pool.connection() as conn:
        if not await store.redeliver(conn, row["id"], delivery_id, now=config.clock()):
            return json_error(404, "not_found", "delivery not found")
        delivery = await store.get_delivery(conn, row["id"], delivery_id)
    return web.json_response(delivery, status=202)


async def replay(request: web.Request) -> web.Response:
    """Queue again, from the event store, every message of the endpoint's types since a
    moment: ones delivered before are sent again, ones it never got are queued. Recorded, then
    run in the background by any replica (webhooks.replays); the deliveries appear in the log
    as they are queued, and `GET …/replays/{id}` says how far it is."""
    config = request.app[CONFIG]
    row = await _endpoint(request)
    body = await parse_body(request, Replay)
    if body.since > config.clock():
        raise unprocessable("invalid request body", "since", "must not be in the future")
    async with config.pool.connection() as conn:
        replay_row = await store.create_replay(
            conn,
            row["id"],
            row["organization_id"],
            body.since,
            until=await history.store_head(conn),
            now=config.clock(),
        )
    return web.json_response(
        {**store.replay_view(replay_row), "status": "started"},
        status=202,
    )


async def get_replay(request: web.Request) -> web.Response:
    row = await _endpoint(request)
    try:
        replay_id = uuid.UUID(request.match_info["replay_id"])
    except ValueError:
        return json_error(404, "not_found", "replay not found")
    async with request.app[CONFIG].pool.connection() as conn:
        found = await store.get_replay(conn, row["id"], replay_id)
    if found is None:
        return json_error(404, "not_found", "replay not found")
    return web.json_response(store.replay_view(found))
