"""Twilio JSON shapes: call and recording resources, list pages, errors, and date formats."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from carrier_sim.store import CallRecord, RecordingRecord

API_VERSION = "2010-04-01"
_US_NUMBER = re.compile(r"^\+1(\d{3})(\d{3})(\d{4})$")


def rfc2822(epoch: float | None) -> str | None:
    """Twilio's date format, e.g. ``Tue, 31 Aug 2010 20:36:28 +0000``."""
    if epoch is None:
        return None
    return format_datetime(datetime.fromtimestamp(int(epoch), tz=UTC))


def error_body(status: int, code: int, message: str) -> dict[str, Any]:
    """A Twilio REST error document (``TwilioRestException`` reads ``code`` and ``message``)."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _formatted(number: str) -> str:
    match = _US_NUMBER.match(number)
    return f"({match[1]}) {match[2]}-{match[3]}" if match else number


def account_uri(account_sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}"


def call_uri(call: CallRecord) -> str:
    return f"{account_uri(call.account_sid)}/Calls/{call.sid}.json"


def call_resource(call: CallRecord) -> dict[str, Any]:
    """The call resource as ``GET .../Calls/{Sid}.json`` returns it."""
    base = f"{account_uri(call.account_sid)}/Calls/{call.sid}"
    return {
        "account_sid": call.account_sid,
        "annotation": None,
        "answered_by": call.answered_by,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": rfc2822(call.created_at),
        "date_updated": rfc2822(call.updated_at),
        "direction": "outbound-api",
        "duration": None if call.duration is None else str(call.duration),
        "end_time": rfc2822(call.end_time),
        "forwarded_from": None,
        "from": call.from_,
        "from_formatted": _formatted(call.from_),
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": call.sid,
        "start_time": rfc2822(call.start_time),
        "status": call.status,
        "stir_verstat": None,
        "subresource_uris": {
            name: f"{base}/{name}.json"
            for name in (
                "feedback",
                "notifications",
                "recordings",
                "streams",
                "payments",
                "user_defined_message_subscriptions",
                "user_defined_messages",
                "events",
                "siprec",
                "transcriptions",
            )
        },
        "to": call.to,
        "to_formatted": _formatted(call.to),
        "trunk_sid": None,
        "uri": call_uri(call),
    }


def recording_resource(recording: RecordingRecord) -> dict[str, Any]:
    """The recording resource as ``GET .../Recordings/{Sid}.json`` returns it."""
    base = f"{account_uri(recording.account_sid)}/Recordings/{recording.sid}"
    return {
        **_recording_fields(recording),
        "subresource_uris": {
            "add_on_results": f"{base}/AddOnResults.json",
            "transcriptions": f"{base}/Transcriptions.json",
        },
        "uri": f"{base}.json",
    }


def call_recording_resource(recording: RecordingRecord) -> dict[str, Any]:
    """A call's recording as ``GET .../Calls/{CallSid}/Recordings.json`` lists it: the same
    fields, ``track``, and its URI under the call (the media is served under the account)."""
    call = f"{account_uri(recording.account_sid)}/Calls/{recording.call_sid}"
    return {
        **_recording_fields(recording),
        "track": "both",
        "uri": f"{call}/Recordings/{recording.sid}.json",
    }


def call_recordings_page(
    recordings: list[RecordingRecord], list_uri: str, *, page: int, page_size: int
) -> dict[str, Any]:
    """A Twilio list page (key ``recordings``) of a call's recordings, newest first."""
    newest_first = sorted(recordings, key=lambda r: r.created_at, reverse=True)
    offset = page * page_size
    items = newest_first[offset : offset + page_size]

    def uri(number: int) -> str:
        return f"{list_uri}?PageSize={page_size}&Page={number}"

    return {
        "recordings": [call_recording_resource(r) for r in items],
        "end": offset + max(0, len(items) - 1),
        "first_page_uri": uri(0),
        "next_page_uri": uri(page + 1) if offset + len(items) < len(newest_first) else None,
        "page": page,
        "page_size": page_size,
        "previous_page_uri": uri(page - 1) if page > 0 else None,
        "start": offset,
        "uri": uri(page),
    }


def _recording_fields(recording: RecordingRecord) -> dict[str, Any]:
    return {
        "account_sid": recording.account_sid,
        "api_version": API_VERSION,
        "call_sid": recording.call_sid,
        "conference_sid": None,
        "channels": recording.channels,
        "date_created": rfc2822(recording.created_at),
        "date_updated": rfc2822(recording.created_at),
        "start_time": rfc2822(recording.start_time),
        "duration": str(round(recording.duration_seconds)),
        "encryption_details": None,
        "error_code": None,
        "media_url": None,
        "price": None,
        "price_unit": "USD",
        "sid": recording.sid,
        "source": recording.source,
        "status": recording.status,
    }
