"""Carrier webhooks: Twilio's status callbacks become CallStatusReported events.

Every request must carry a valid X-Twilio-Signature for the exact URL Twilio called, rebuilt
from PUBLIC_BASE_URL (so it works behind a proxy), and name our account; otherwise 403 and
nothing is recorded. The same callback delivered twice is recorded once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from aiohttp import web
from calls_events import CallStatusReported, Envelope, call_stream
from calls_platform import eventstore
from calls_platform.http import json_error
from calls_platform.metrics import EVENTS_APPENDED
from pydantic import ValidationError

from .context import POOL, SETTINGS, TWILIO_VALIDATOR
from .validation import validation_details

CARRIER_STATUSES = frozenset(
    {
        "queued",
        "initiated",
        "ringing",
        "in-progress",
        "completed",
        "busy",
        "failed",
        "no-answer",
        "canceled",
    }
)


async def _verified_form(request: web.Request) -> dict[str, str] | web.Response:
    form = await request.post()
    text_only = all(isinstance(v, str) for v in form.values())
    url = request.app[SETTINGS].public_base_url + request.path_qs
    signature = request.headers.get("X-Twilio-Signature", "")
    # The form itself, not a dict of it: Twilio signs every value of a repeated parameter.
    if (
        not signature
        or not text_only
        or not request.app[TWILIO_VALIDATOR].validate(url, form, signature)
    ):
        return json_error(403, "forbidden", "invalid Twilio signature")
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    if params.get("AccountSid") != request.app[SETTINGS].twilio_account_sid:
        return json_error(403, "forbidden", "callback for another account")
    return params


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _timestamp(value: str | None) -> datetime:
    if value:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            pass
        else:  # "-0000" (UTC, source zone unknown) parses to a naive datetime
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


async def call_status(request: web.Request) -> web.Response:
    verified = await _verified_form(request)
    if isinstance(verified, web.Response):
        return verified
    form = verified
    try:
        call_id = uuid.UUID(request.query.get("call_id", ""))
    except ValueError:
        return json_error(422, "validation_error", "callback URL lacks a valid call_id")
    org = request.query.get("org", "")
    status = form.get("CallStatus", "")
    call_sid = form.get("CallSid", "")
    if status not in CARRIER_STATUSES or not call_sid:
        return json_error(422, "validation_error", "CallStatus and CallSid are required")
    try:
        report = CallStatusReported(
            call_id=call_id,
            call_sid=call_sid,
            carrier_status=status,
            sequence_number=_int(form.get("SequenceNumber")),
            duration_seconds=_int(form.get("CallDuration")),
            answered_by=form.get("AnsweredBy") or None,
            sip_response_code=_int(form.get("SipResponseCode")),
            reported_at=_timestamp(form.get("Timestamp")),
        )
    except ValidationError as exc:
        return json_error(
            422, "validation_error", "invalid status callback", validation_details(exc)
        )
    stream = call_stream(call_id)
    async with request.app[POOL].connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT correlation_id FROM eventstore.events"
            " WHERE stream_id = %s AND organization_id = %s ORDER BY stream_version LIMIT 1",
            (stream, org),
        )
        first = await cur.fetchone()
        if first is None:
            return json_error(404, "not_found", "no such call")
        await eventstore.append(
            conn,
            [
                Envelope.wrap(
                    report,
                    stream_id=stream,
                    organization_id=org,
                    correlation_id=first["correlation_id"],
                    # event ids are unique store-wide: key by the call too, so a report can
                    # only ever be deduplicated against a report on the same call
                    event_id=eventstore.deterministic_event_id(
                        "status", str(call_id), call_sid, status, form.get("SequenceNumber", "")
                    ),
                )
            ],
        )
    EVENTS_APPENDED.labels(CallStatusReported.TYPE).inc()
    return web.Response(status=204)
