"""Events of a call's recording: reported by the carrier, stored by us, failed, deleted."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ._base import Event

# Twilio's recording SIDs: "RE" and 32 lowercase hex digits. Storage keys are built from them,
# so nothing else is ever accepted.
RECORDING_SID = r"^RE[0-9a-f]{32}$"

RecordingSid = Annotated[str, StringConstraints(pattern=RECORDING_SID)]
RecordingStatus = Literal["completed", "absent", "failed"]


class RecordingReported(Event):
    """The carrier reported the outcome of a call's recording: Twilio's signed recording
    status callback (appended by the gateway), or, when that callback was lost, the carrier's
    list of the call's recordings (appended by the dialer's watchdog, with the same event id,
    so the two are stored once). The recordings service fetches what it names."""

    TYPE = "RecordingReported"

    call_id: uuid.UUID
    call_sid: str
    recording_sid: RecordingSid
    # where the carrier serves the audio (no extension: add ".wav"); None when absent
    recording_url: Annotated[str, StringConstraints(pattern=r"^https?://", max_length=2048)] | None
    status: RecordingStatus
    duration_seconds: int | None = Field(default=None, ge=0)
    channels: int | None = Field(default=None, ge=1, le=2)
    # Twilio's RecordingSource, e.g. "OutboundAPI"
    source: Annotated[str, StringConstraints(max_length=64)] | None = None
    error_code: int | None = None
    # how we learned it: the carrier's callback, or asking the carrier (reconciliation)
    reported_via: Literal["callback", "reconciliation"] = "callback"


class RecordingStored(Event):
    """The recordings service downloaded the call's audio, checked it is a WAV, and stored it."""

    TYPE = "RecordingStored"

    call_id: uuid.UUID
    call_sid: str
    recording_sid: RecordingSid
    # where the audio is, inside the recordings service's storage (not a URL)
    storage_key: str
    size_bytes: int = Field(ge=0)
    content_type: str
    duration_seconds: int | None = Field(default=None, ge=0)


class RecordingFailed(Event):
    """The call's recording could not be stored: the carrier reported it failed, or the
    download kept failing, or what came back was refused (not a WAV, too large)."""

    TYPE = "RecordingFailed"

    call_id: uuid.UUID
    recording_sid: RecordingSid
    reason: str
    # download attempts made (0 when the carrier itself reported the failure)
    attempts: int = Field(ge=0)


class RecordingDeleted(Event):
    """A client deleted the call's stored recording; the audio is gone from storage."""

    TYPE = "RecordingDeleted"

    call_id: uuid.UUID
    recording_sid: RecordingSid
    requested_by: str
