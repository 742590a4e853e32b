"""The gateway's routes and request pipeline (authentication, 4xx mapping)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from calls_platform.http import json_error

from . import agents, calls, conversations, reads, recordings, webhooks
from .auth import Unauthenticated
from .context import PRINCIPAL, VERIFIER
from .validation import BadRequest

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Routes that authenticate differently (carrier signatures) or not at all (probes).
_PUBLIC_PREFIXES = ("/healthz", "/readyz", "/metrics", "/webhooks/")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(_PUBLIC_PREFIXES):
        return await handler(request)
    try:
        request[PRINCIPAL] = request.app[VERIFIER].verify(request.headers.get("Authorization"))
    except Unauthenticated as exc:
        return json_error(
            401, "unauthorized", str(exc), headers={"WWW-Authenticate": 'Bearer realm="calls"'}
        )
    return await handler(request)


@web.middleware
async def bad_request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadRequest as exc:
        return exc.response


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/agents", agents.create_agent)
    r.add_get("/agents", agents.list_agents)
    r.add_put("/sip-config", agents.put_sip_config)
    r.add_get("/sip-config", agents.get_sip_config)
    # /calls/batch before /calls/{call_id}: routes match in the order they are added
    r.add_post("/calls/batch", calls.place_batch)
    r.add_get("/calls/batch/{batch_id}", reads.get_batch)
    r.add_post("/calls/batch/{batch_id}/cancel", calls.cancel_batch)
    r.add_post("/calls", calls.place_call)
    r.add_get("/calls", reads.list_calls)
    r.add_get("/calls/{call_id}", reads.get_call)
    r.add_post("/calls/{call_id}/conversation", conversations.report_conversation)
    r.add_get("/calls/{call_id}/recording", recordings.get_recording)
    r.add_delete("/calls/{call_id}/recording", recordings.delete_recording)
    r.add_post("/webhooks/twilio/status", webhooks.call_status)
    r.add_post("/webhooks/twilio/recording", webhooks.recording_status)
    r.add_post("/webhooks/twilio/voice", webhooks.incoming_call)
