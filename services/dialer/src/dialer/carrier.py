"""The carrier port: what the dialer needs from Twilio, and the values it answers with.

Every outcome of a create request is classified, because what may be done next depends on
whether the carrier might have created the call:

- Placed: it did; here is the SID.
- Rejected: it refused for good (e.g. 21211 invalid number); never retry.
- Throttled / Unsent: it certainly did not create it (429, or no connection); retry later.
- Ambiguous: it may have (5xx, timeout, connection lost mid-request); reconcile, never redial.

The adapter on the twilio library is twilio_carrier.TwilioCarrier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class DialRequest:
    call_id: str
    organization_id: str
    to_number: str
    from_number: str
    record: bool
    # handed to the voice agent as <Parameter>s of the <Stream> (beside call_id)
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Placed:
    call_sid: str


@dataclass(frozen=True)
class Rejected:
    code: int | None
    message: str
    http_status: int


@dataclass(frozen=True)
class Throttled:
    message: str


@dataclass(frozen=True)
class Unsent:
    message: str


@dataclass(frozen=True)
class Ambiguous:
    message: str


DialResult = Placed | Rejected | Throttled | Unsent | Ambiguous


@dataclass(frozen=True)
class CarrierCall:
    sid: str
    status: str
    duration_seconds: int | None = None
    answered_by: str | None = None
    # when the call ended at the carrier (Twilio's end_time), once it has
    end_time: datetime | None = None


@dataclass(frozen=True)
class CarrierRecording:
    """One of a call's recordings, as the carrier lists it."""

    sid: str
    status: str
    # where the carrier serves the audio, as the recording callback's RecordingUrl gives it:
    # the account's .../Recordings/RE... URL, no extension
    url: str
    duration_seconds: int | None = None
    channels: int | None = None
    source: str | None = None
    error_code: int | None = None


@dataclass(frozen=True)
class CancelRefused:
    """The carrier would not cancel the call (it has moved on: answered or ended)."""

    code: int | None
    message: str


class UnknownCall(LookupError):
    """The carrier has no call of that SID (Twilio answers 404)."""


class Carrier(Protocol):
    async def create_call(self, request: DialRequest) -> DialResult: ...

    async def find_calls(
        self, *, to_number: str, from_number: str, since: datetime
    ) -> list[CarrierCall]: ...

    async def fetch_call(self, call_sid: str) -> CarrierCall:
        """The call as the carrier has it now; UnknownCall when it has none of that SID."""
        ...

    async def list_recordings(self, call_sid: str) -> list[CarrierRecording]: ...

    async def cancel_call(self, call_sid: str) -> CarrierCall | CancelRefused:
        """Cancel a queued or ringing call; other failures (timeouts, 5xx) raise."""
        ...

    async def close(self) -> None: ...
