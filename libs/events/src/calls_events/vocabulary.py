"""The words the Calls API answers with: call statuses, carrier statuses, outcomes, batch
statuses, and the `queued-…` placeholder SID. Defined here once; services and their SQL take
them from here (`typing.get_args` gives a Literal's values as a tuple for a query parameter).

Adding an outcome is one line in `Outcome` (and a row in docs/api.md's outcome table).
"""

from __future__ import annotations

import uuid
from typing import Final, Literal, get_args

CallStatus = Literal["queued", "in-progress", "completed", "failed"]
"""A call's status, exactly the reference's four values."""

CarrierStatus = Literal[
    "queued",
    "initiated",
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "failed",
    "no-answer",
    "canceled",
]
"""Twilio's call status (`CallStatus` of its callbacks, `status` of its call resource)."""

Outcome = Literal[
    # the reference's four
    "completed",
    "voicemail",
    "caller_hangup",
    "invalid_number",
    # extensions: how else a call ends
    "busy",
    "no_answer",
    "canceled",
    "failed",
    # extensions of campaigns: a call the dialer did not place
    "do_not_call",
    "expired",
]
"""How a call ended; null until it has."""

BatchCallStatus = Literal["queued", "initiated", "failed", "canceled"]
"""A batch entry's status: the buckets GET /calls/batch/{id} counts (`canceled` an extension)."""

BatchStatus = Literal["queued", "in-progress", "completed", "canceled"]
"""A whole batch's status (an extension of GET /calls/batch/{id})."""

CALL_STATUSES: Final[tuple[CallStatus, ...]] = get_args(CallStatus)
CARRIER_STATUSES: Final[tuple[CarrierStatus, ...]] = get_args(CarrierStatus)
OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)
BATCH_CALL_STATUSES: Final[tuple[BatchCallStatus, ...]] = get_args(BatchCallStatus)
BATCH_STATUSES: Final[tuple[BatchStatus, ...]] = get_args(BatchStatus)

TERMINAL_CALL_STATUSES: Final[frozenset[CallStatus]] = frozenset({"completed", "failed"})
TERMINAL_CARRIER_STATUSES: Final[frozenset[CarrierStatus]] = frozenset(
    {"completed", "busy", "failed", "no-answer", "canceled"}
)
CARRIER_PROGRESS: Final[tuple[CarrierStatus, ...]] = (
    "queued",
    "initiated",
    "ringing",
    "in-progress",
)
"""The order a call moves through at the carrier before one of the terminal statuses."""

_PLACEHOLDER_PREFIX: Final = "queued-"


def placeholder_call_sid(call_id: uuid.UUID) -> str:
    """The SID a call shows until the carrier gives it one: `queued-` and the first 12 hex
    digits of its id (what POST /calls answers and the call log shows)."""
    return f"{_PLACEHOLDER_PREFIX}{call_id.hex[:12]}"


def is_placeholder_call_sid(call_sid: str | None) -> bool:
    return call_sid is None or call_sid.startswith(_PLACEHOLDER_PREFIX)
