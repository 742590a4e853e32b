"""Events of a call's life: requested, dialed, reported on by the carrier, ended."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from ._base import Event
from .vocabulary import CarrierStatus

# [0-9], not \d: \d also matches the digits of other scripts (Arabic-Indic, full-width).
E164 = r"^\+[1-9][0-9]{1,14}$"


def call_stream(call_id: uuid.UUID) -> str:
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
