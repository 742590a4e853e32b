"""The gateway's routes and request pipeline (authentication, 4xx mapping)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from calls_platform.http import json_error

from . import (
    agents,
    api_keys,
    batch_control,
    calling_policy,
    calls,
    carrier_callbacks,
    conversations,
    do_not_call,
    reads,
    recordings,
    webhook_endpoints,
)
from .auth import READ, WEBHOOKS_MANAGE, WRITE, Principal, Unauthenticated
from .context import AUTH_POOL, PRINCIPAL, RATE_LIMITER, VERIFIER
from .docs import setup_docs

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Routes that authenticate differently (carrier signatures) or not at all (probes, API docs).
_PUBLIC_PREFIXES = (
    "/healthz",
    "/readyz",
    "/metrics",
    "/webhooks/",
    "/openapi.json",
    "/asyncapi.json",
    "/docs",
)
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="calls", ApiKey header="X-API-Key"'}


async def _authenticate(request: web.Request) -> Principal:
    authorization = request.headers.get("Authorization")
    api_key = request.headers.get("X-API-Key")
    if api_key is not None and authorization is not None:
        raise Unauthenticated("send either Authorization or X-API-Key, not both")
    if api_key is not None:
        return await api_keys.authenticate(request.app[AUTH_POOL], api_key)
    if authorization is None:
        raise Unauthenticated(
            "missing credentials: send 'Authorization: Bearer <JWT>' or 'X-API-Key: <key>'"
        )
    return request.app[VERIFIER].verify(authorization)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, check the scope the method needs, and meter writes."""
    if request.path.startswith(_PUBLIC_PREFIXES):
        return await handler(request)
    try:
        who = await _authenticate(request)
    except Unauthenticated as exc:
        return json_error(401, "unauthorized", str(exc), headers=_CHALLENGE)
    is_write = request.method not in _READ_METHODS
    if request.path.startswith(webhook_endpoints.PREFIX):
        needed = WEBHOOKS_MANAGE
    else:
        needed = WRITE if is_write else READ
    if needed not in who.scopes:
        return json_error(403, "insufficient_scope", f"this API key lacks the {needed} scope")
    if is_write:
        limited = await request.app[RATE_LIMITER].take(who)
        if limited is not None:
            return json_error(
                429,
                "rate_limited",
                f"too many write requests for this {limited.scope}"
                f" (limit {limited.limit.per_second:g}/s, burst {limited.limit.burst});"
                f" retry after {limited.retry_after_seconds} s",
                headers={"Retry-After": str(limited.retry_after_seconds)},
            )
    request[PRINCIPAL] = who
    return await handler(request)


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/agents", agents.create_agent)
    r.add_get("/agents", agents.list_agents)
    r.add_post("/api-keys", api_keys.create_api_key)
    r.add_get("/api-keys", api_keys.list_api_keys)
    r.add_delete("/api-keys/{key_id}", api_keys.revoke_api_key)
    r.add_put("/sip-config", agents.put_sip_config)
    r.add_get("/sip-config", agents.get_sip_config)
    # /calls/batch before /calls/{call_id}: routes match in the order they are added
    r.add_post("/calls/batch", calls.place_batch)
    r.add_get("/calls/batch/{batch_id}", reads.get_batch)
    r.add_post("/calls/batch/{batch_id}/cancel", calls.cancel_batch)
    r.add_post("/calls/batch/{batch_id}/pause", batch_control.pause_batch)
    r.add_post("/calls/batch/{batch_id}/resume", batch_control.resume_batch)
    r.add_put("/do-not-call/{number}", do_not_call.add_number)
    r.add_delete("/do-not-call/{number}", do_not_call.remove_number)
    r.add_get("/do-not-call", do_not_call.list_numbers)
    r.add_put("/calling-policy", calling_policy.put_calling_policy)
    r.add_get("/calling-policy", calling_policy.get_calling_policy)
    r.add_post("/calls", calls.place_call)
    r.add_get("/calls", reads.list_calls)
    r.add_get("/calls/{call_id}", reads.get_call)
    r.add_post("/calls/{call_id}/conversation", conversations.report_conversation)
    r.add_get("/calls/{call_id}/recording", recordings.get_recording)
    r.add_delete("/calls/{call_id}/recording", recordings.delete_recording)
    webhook_endpoints.setup_routes(app)
    r.add_post("/webhooks/twilio/status", carrier_callbacks.call_status)
    r.add_post("/webhooks/twilio/recording", carrier_callbacks.recording_status)
    r.add_post("/webhooks/twilio/voice", carrier_callbacks.incoming_call)
    setup_docs(app)  # GET /openapi.json, GET /docs
