"""Pausing and resuming a batch (POST /calls/batch/{id}/pause, /resume): nothing of a paused
batch is dialed; calls already placed ring on. Idempotent: asking for the state the batch is
in appends nothing."""

from __future__ import annotations

from aiohttp import web
from calls_events import TERMINAL_CALL_STATUSES, BatchPaused, BatchResumed, Envelope
from calls_platform import eventstore
from calls_platform.http import CORRELATION_KEY, json_error
from calls_platform.metrics import EVENTS_APPENDED

from .context import POOL, principal
from .reads import batch_to_change


async def _set_paused(request: web.Request, paused: bool) -> web.Response:
    batch_id = request.match_info["batch_id"]
    batch = await batch_to_change(request, batch_id)
    if batch["status"] == "canceled" or all(
        call["call_status"] in TERMINAL_CALL_STATUSES for call in batch["calls"]
    ):
        return json_error(409, "conflict", f"batch is {batch['status']}: nothing left to dial")
    if bool(batch.get("paused")) != paused:
        who = principal(request)
        event = (BatchPaused if paused else BatchResumed)(
            batch_id=batch_id, requested_by=who.subject
        )
        async with request.app[POOL].connection() as conn:
            await eventstore.append(
                conn,
                [
                    Envelope.wrap(
                        event,
                        stream_id=batch_id,
                        organization_id=who.organization_id,
                        correlation_id=request[CORRELATION_KEY],
                    )
                ],
            )
        EVENTS_APPENDED.labels(event.TYPE).inc()
    return web.json_response(
        {"batch_id": batch_id, "status": batch["status"], "paused": paused}, status=202
    )


async def pause_batch(request: web.Request) -> web.Response:
    return await _set_paused(request, True)


async def resume_batch(request: web.Request) -> web.Response:
    return await _set_paused(request, False)
