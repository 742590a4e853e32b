"""POST /calls/{call_id}/conversation: the voice-agent runtime reports transcript and usage."""

from __future__ import annotations

import hashlib
import uuid

from aiohttp import web
from calls_events import ConversationReported, call_stream
from calls_platform import eventstore
from calls_platform.http import invalid, json_error, parse_body
from calls_platform.metrics import EVENTS_APPENDED
from pydantic import ValidationError

from .context import POOL, principal
from .models import ReportConversation


async def report_conversation(request: web.Request) -> web.Response:
    try:
        call_id = uuid.UUID(request.match_info["call_id"])
    except ValueError:
        return json_error(404, "not_found", "call not found")
    body = await parse_body(request, ReportConversation)
    org = principal(request).organization_id
    try:
        event = ConversationReported(
            call_id=call_id,
            transcript=body.transcript,
            provider_usage=body.provider_usage,
            ended_by=body.ended_by,
        )
    except ValidationError as exc:  # what the event allows, where the body allowed more
        raise invalid(exc) from None
    # a retried identical report is stored once; a different later report supersedes it
    digest = hashlib.sha256(event.model_dump_json().encode()).hexdigest()
    async with request.app[POOL].connection() as conn:
        continued = await eventstore.continue_stream(
            conn,
            call_stream(call_id),
            event,
            event_id=eventstore.deterministic_event_id("conversation", str(call_id), digest),
            organization_id=org,
        )
    if continued is None:
        return json_error(404, "not_found", "call not found")
    if continued.appended:
        EVENTS_APPENDED.labels(ConversationReported.TYPE).inc()
    return web.json_response({"call_id": str(call_id), "status": "recorded"}, status=202)
