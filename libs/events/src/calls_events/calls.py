"""Events of a call's life: requested, dialed, reported on by the carrier, ended."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from ._base import Event
from .schedules import RetryPolicy, Schedule
from .vocabulary import CarrierStatus

# [0-9], not \d: \d also matches the digits of other scripts (Arabic-Indic, full-width).
E164 = r"^\+[1-9][0-9]{1,14}$"


def call_stream(call_id: uuid.UUID | str) -> str:
    return f"call-{call_id}"


class CallRequested(Event):
    """A client asked for an outbound call. Appended by the gateway; the dialer dials it."""

    TYPE = "CallRequested"

    call_id: uuid.UUID
    to_number: str = Field(pattern=E164)
    from_number: str = Field(pattern=E164)
    agent_id: uuid.UUID | None = None
    agent_name: str | None = None
    batch_id: str | None = None
    batch_index: int | None = Field(default=None, ge=0)
    record: bool = True
    requested_by: str
    # handed to the voice agent as <Parameter>s of the call's <Connect><Stream>
    variables: dict[str, str] = Field(default_factory=dict)
    # the client's own data about the call, stored and returned, never interpreted
    metadata: dict[str, Any] = Field(default_factory=dict)
    # when the call may ring (None: whenever; the organization's default window is copied in
    # by the gateway when the request sets none)
    schedule: Schedule | None = None
    retry: RetryPolicy | None = None
    # at most this many calls of the call's batch in flight at once
    max_concurrency: int | None = Field(default=None, ge=1)
    # which attempt at the recipient this call is (a retry is a new call), and the calls before
    attempt: int = Field(default=1, ge=1)
    previous_call_id: uuid.UUID | None = None
    first_call_id: uuid.UUID | None = None


class CallInitiated(Event):
    """The carrier accepted the call and gave it a SID. Appended by the dialer."""

    TYPE = "CallInitiated"

    call_id: uuid.UUID
    call_sid: str
    source: Literal["dial", "reconciliation", "callback"] = "dial"


class CallFailed(Event):
    """The call could not be placed; code and message are the carrier's when it refused it."""

    TYPE = "CallFailed"

    call_id: uuid.UUID
    error_code: int | None = None
    error_message: str
    # the carrier's HTTP status when it refused the call, None when we gave up ourselves
    http_status: int | None = None


class CallCanceled(Event):
    """The call will not be dialed (its batch was canceled before it was dialed)."""

    TYPE = "CallCanceled"

    call_id: uuid.UUID
    reason: str


class CallStatusReported(Event):
    """The carrier reported the call's status, by a status callback or when asked.

    Reports may arrive late, twice or out of order; consumers order them by `sequence_number`
    and never move a call backwards.
    """

    TYPE = "CallStatusReported"

    call_id: uuid.UUID
    call_sid: str
    carrier_status: CarrierStatus
    sequence_number: int | None = None
    duration_seconds: int | None = Field(default=None, ge=0)
    answered_by: str | None = None
    sip_response_code: int | None = None
    reported_at: datetime
    source: Literal["callback", "reconciliation"] = "callback"
