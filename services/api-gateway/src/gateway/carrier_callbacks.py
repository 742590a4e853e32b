"""Carrier callbacks: status callbacks become CallStatusReported events, recording callbacks
RecordingReported events; an incoming call to an agent's number becomes InboundCallReceived and
is answered with TwiML that connects the caller to the voice-agent runtime.

Every request must carry a valid X-Twilio-Signature for the exact URL Twilio called, rebuilt
from PUBLIC_BASE_URL (so it works behind a proxy), and name our account; otherwise 403 and
nothing is recorded. The same callback delivered twice is recorded once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final, get_args

from aiohttp import web
from calls_events import (
    CARRIER_STATUSES,
    CallStatusReported,
    Envelope,
    Event,
    InboundCallReceived,
    RecordingReported,
    RecordingStatus,
    call_stream,
)
from calls_platform import eventstore
from calls_platform.http import CORRELATION_KEY, invalid, json_error
from calls_platform.metrics import EVENTS_APPENDED
from calls_platform.report_ids import recording_reported_id
from pydantic import ValidationError

from .agents import find_agent_for_number
from .context import POOL, SETTINGS, TWILIO_VALIDATORS
from .streams import inbound_call_id
from .twiml import connect_to_agent, reject

RECORDING_STATUSES: Final = frozenset(get_args(RecordingStatus))


async def _verified_form(request: web.Request) -> dict[str, str] | web.Response:
    form = await request.post()
    text_only = all(isinstance(v, str) for v in form.values())
    url = request.app[SETTINGS].public_base_url + request.path_qs
    signature = request.headers.get("X-Twilio-Signature", "")
    # The form itself, not a dict of it: Twilio signs every value of a repeated parameter.
    if (
        not signature
        or not text_only
        or not any(v.validate(url, form, signature) for v in request.app[TWILIO_VALIDATORS])
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


def _callback_call_id(request: web.Request, call_sid: str) -> uuid.UUID | web.Response:
    """Outbound calls carry our call id in the callback URL; inbound calls (whose callback URL
    is configured on the number) are found by the id derived from their SID."""
    if "call_id" not in request.query:
        return inbound_call_id(call_sid)
    try:
        return uuid.UUID(request.query["call_id"])
    except ValueError:
        return json_error(422, "validation_error", "callback URL has an invalid call_id")


async def _record_on_call(
    request: web.Request, call_id: uuid.UUID, report: Event, event_id: uuid.UUID
) -> web.Response:
    """Append a carrier report to its call's stream (once per event id); 404 for a call we do
    not know, or whose organization differs from the one the callback URL names. The lookup
    and the append are one statement (one round trip)."""
    async with request.app[POOL].connection() as conn:
        continued = await eventstore.continue_stream(
            conn,
            call_stream(call_id),
            report,
            event_id=event_id,
            organization_id=request.query.get("org"),
        )
    if continued is None:
        return json_error(404, "not_found", "no such call")
    if continued.appended:
        EVENTS_APPENDED.labels(report.TYPE).inc()
    return web.Response(status=204)


async def call_status(request: web.Request) -> web.Response:
    verified = await _verified_form(request)
    if isinstance(verified, web.Response):
        return verified
    form = verified
    status = form.get("CallStatus", "")
    call_sid = form.get("CallSid", "")
    if status not in CARRIER_STATUSES or not call_sid:
        return json_error(422, "validation_error", "CallStatus and CallSid are required")
    call_id = _callback_call_id(request, call_sid)
    if isinstance(call_id, web.Response):
        return call_id
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
        return invalid(exc, "invalid status callback").response
    # event ids are unique store-wide: key by the call too, so a report can only ever be
    # deduplicated against a report on the same call
    event_id = eventstore.deterministic_event_id(
        "status", str(call_id), call_sid, status, form.get("SequenceNumber", "")
    )
    return await _record_on_call(request, call_id, report, event_id)


async def recording_status(request: web.Request) -> web.Response:
    """Twilio's recording status callback: the recordings service fetches what it reports."""
    verified = await _verified_form(request)
    if isinstance(verified, web.Response):
        return verified
    form = verified
    status, call_sid = form.get("RecordingStatus", ""), form.get("CallSid", "")
    if status == "in-progress":
        return web.Response(status=204)  # nothing to fetch yet; "completed" follows
    if status not in RECORDING_STATUSES or not call_sid:
        return json_error(422, "validation_error", "RecordingStatus and CallSid are required")
    call_id = _callback_call_id(request, call_sid)
    if isinstance(call_id, web.Response):
        return call_id
    try:
        report = RecordingReported(
            call_id=call_id,
            call_sid=call_sid,
            recording_sid=form.get("RecordingSid", ""),
            recording_url=form.get("RecordingUrl") or None,
            status=status,
            duration_seconds=_int(form.get("RecordingDuration")),
            channels=_int(form.get("RecordingChannels")),
            source=form.get("RecordingSource") or None,
            error_code=_int(form.get("ErrorCode")),
        )
    except ValidationError as exc:
        return invalid(exc, "invalid recording callback").response
    if report.status == "completed" and report.recording_url is None:
        return json_error(422, "validation_error", "a completed recording needs RecordingUrl")
    # the same callback twice is one report (and one download)
    # the same id the dialer derives when it finds the recording itself (callback lost)
    event_id = recording_reported_id(call_id, report.recording_sid, status)
    return await _record_on_call(request, call_id, report, event_id)


async def incoming_call(request: web.Request) -> web.Response:
    """Twilio's voice webhook for a number: record the inbound call, connect it to the agent."""
    verified = await _verified_form(request)
    if isinstance(verified, web.Response):
        return verified
    call_sid, to_number = verified.get("CallSid", ""), verified.get("To", "")
    if not call_sid or not to_number:
        return json_error(422, "validation_error", "CallSid and To are required")
    call_id = inbound_call_id(call_sid)
    async with request.app[POOL].connection() as conn, conn.transaction():
        owner = await find_agent_for_number(conn, to_number)
        if owner is None:
            return reject()
        organization_id, agent = owner
        event = InboundCallReceived(
            call_id=call_id,
            call_sid=call_sid,
            from_number=verified.get("From", "")[:128],
            to_number=to_number,
            agent_id=agent.id,
            agent_name=agent.name,
            received_at=_timestamp(verified.get("Timestamp")),
        )
        envelope = Envelope.wrap(
            event,
            stream_id=call_stream(call_id),
            organization_id=organization_id,
            correlation_id=request[CORRELATION_KEY],
            event_id=eventstore.deterministic_event_id("inbound", call_sid),
        )
        await eventstore.append(conn, [envelope])
    EVENTS_APPENDED.labels(InboundCallReceived.TYPE).inc()
    return connect_to_agent(request.app[SETTINGS].agent_stream_url, call_id)
