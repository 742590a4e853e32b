"""What the public API answers, as pydantic models: the response half of the OpenAPI document.

The handlers build their JSON by hand (reads are relayed as bytes from the call log), so these
models describe rather than produce; the fuzz test (tests/test_e2e_fuzz_gateway.py) checks every
real response against them, and test_gateway_openapi*.py checks that the call log's own lists of
statuses, outcomes and query parameters are the ones written here. `extra="forbid"` makes a
field the document does not name a schema mismatch, so the document cannot quietly fall behind.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from calls_events import ProviderUse, TranscriptTurn, WebhookEventType
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from .models import PhoneNumber

CallStatus = Literal[
    "queued", "initiated", "ringing", "in-progress", "completed", "failed", "canceled"
]
Outcome = Literal[
    "completed",
    "voicemail",
    "caller_hangup",
    "invalid_number",
    "busy",
    "no_answer",
    "canceled",
    "failed",
]
BatchState = Literal["queued", "in-progress", "completed", "canceled"]
Scope = Literal["calls:read", "calls:write", "webhooks:manage"]

BATCH_ID_PATTERN: Final = r"^batch-[0-9a-f]{32}$"
BatchId = Annotated[
    str,
    Field(
        pattern=BATCH_ID_PATTERN,
        examples=["batch-0f8fad5bd9cb469fa16570867728950e"],
        description="`batch-` and 32 hex digits",
    ),
]
CallSid = Annotated[
    str,
    Field(
        description="`queued-<first 12 hex of call_id>` until the carrier assigns its `CA…` SID",
        examples=["CA0123456789abcdef0123456789abcdef"],
    ),
]


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorDetail(_Response):
    field: str = Field(description="the offending field (`to_numbers.3`), parameter or header")
    message: str
    value: str | int | float | bool | None = Field(
        default=None, description="the value given, when it is a scalar"
    )


class ErrorBody(_Response):
    code: str = Field(
        description="machine-readable: malformed_json, unauthorized, forbidden, not_found, "
        "conflict, payload_too_large, unsupported_media_type, validation_error, "
        "idempotency_key_reused, range_not_satisfiable, rate_limited, …",
        examples=["validation_error"],
    )
    message: str
    details: list[ErrorDetail] | None = Field(
        default=None, description="one entry per offending field (422, some 409)"
    )


class Error(_Response):
    """Every error: JSON, never HTML, never a stack trace."""

    error: ErrorBody


class Agent(_Response):
    id: uuid.UUID
    name: str
    phone_number: PhoneNumber
    recording_enabled: bool
    created_at: datetime


class AgentList(_Response):
    items: list[Agent]


class SipConfigView(_Response):
    default_from_number: PhoneNumber | None


class CallAccepted(_Response):
    call_id: uuid.UUID
    call_sid: CallSid
    status: Literal["queued"]


class BatchAccepted(_Response):
    batch_id: BatchId
    total: int = Field(ge=1, description="unique numbers queued")
    status: Literal["queued"]
    duplicates_dropped: int = Field(ge=0)


class BatchCanceled(_Response):
    batch_id: BatchId
    status: Literal["canceled"]


class BatchCall(_Response):
    call_id: uuid.UUID
    to_number: str
    status: CallStatus
    call_sid: CallSid | None
    error: str | None = Field(description="the carrier's message, for a failed call")


class Batch(_Response):
    batch_id: BatchId
    status: BatchState
    total: int = Field(ge=0)
    queued: int = Field(ge=0)
    initiated: int = Field(ge=0, description="every call the carrier accepted")
    failed: int = Field(ge=0)
    canceled: int = Field(ge=0)
    duplicates_dropped: int = Field(ge=0)
    created_at: datetime
    calls: list[BatchCall] = Field(description="in submission order")


class CallSummary(_Response):
    """A call as GET /calls lists it."""

    call_id: uuid.UUID
    call_sid: CallSid | None
    direction: Literal["inbound", "outbound"]
    status: CallStatus
    outcome: Outcome | None = Field(description="null until the call has ended")
    from_number: str
    to_number: str
    agent_id: uuid.UUID | None
    agent_name: str | None
    batch_id: BatchId | None
    created_at: datetime
    start_time: datetime | None = Field(description="when the carrier started the call")
    end_time: datetime | None
    duration: int | None = Field(description="seconds of conversation")
    error_reason: str | None = Field(description="the carrier's message when it refused")


class Call(CallSummary):
    """A call with everything known about it."""

    error_code: int | None = Field(description="the carrier's error code")
    answered_by: str | None = Field(description="answering-machine detection: human, machine_…")
    transcript: list[TranscriptTurn]
    provider_usage: dict[str, ProviderUse]
    recording_url: str | None = Field(
        description="`call-<call_sid>.wav` once the recording is stored; fetch it from "
        "GET /calls/{call_id}/recording"
    )


class CallPage(_Response):
    items: list[CallSummary] = Field(description="newest first")
    total: int = Field(ge=0)
    page: int = Field(ge=1)
    page_size: int = Field(ge=1, le=100)


class ConversationRecorded(_Response):
    call_id: uuid.UUID
    status: Literal["recorded"]


class ApiKey(_Response):
    id: uuid.UUID
    name: str
    prefix: str = Field(description="the key's first characters, to recognize it")
    scopes: list[Scope]
    created_at: datetime
    last_used_at: datetime | None


class ApiKeyList(_Response):
    items: list[ApiKey] = Field(description="keys not revoked, oldest first")


class ApiKeyCreated(_Response):
    id: uuid.UUID
    name: str
    key: str = Field(description="the key itself: shown this once, never again")
    prefix: str
    scopes: list[Scope]
    created_at: datetime


class WebhookEndpoint(_Response):
    """Where an organization's webhook messages are sent (never the signing secret)."""

    id: uuid.UUID
    url: str
    description: str | None
    events: list[WebhookEventType]
    enabled: bool
    disabled_reason: str | None = Field(
        description="why the service disabled it (every attempt failing for 24 h); null when "
        "enabled or disabled by a PATCH"
    )
    disabled_at: datetime | None
    failing_since: datetime | None = Field(
        description="the first failed attempt since the last success; null when not failing"
    )
    previous_secret_expires_at: datetime | None = Field(
        description="after a rotation: until then, messages are signed with the old secret too"
    )
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecret(WebhookEndpoint):
    secret: str = Field(
        description="the Standard Webhooks signing secret (`whsec_…`): shown this once, never again"
    )


class WebhookEndpointList(_Response):
    items: list[WebhookEndpoint] = Field(description="oldest first")


class WebhookAttempt(_Response):
    number: int = Field(ge=1)
    attempted_at: datetime
    response_status: int | None = Field(description="null: no response (timeout, refused)")
    latency_ms: int = Field(ge=0)
    response_body_excerpt: str | None = Field(description="the first KiB of the response")
    error: str | None = Field(description="why no response came")


class WebhookDelivery(_Response):
    """One message to one endpoint, with every attempt."""

    id: uuid.UUID
    endpoint_id: uuid.UUID
    message_id: str = Field(description="the `webhook-id` header and the payload's `id`")
    event_type: WebhookEventType
    call_id: uuid.UUID | None
    batch_id: BatchId | None
    status: Literal["pending", "delivered", "failed"] = Field(
        description="failed: given up (refused with a 4xx, or failing for 24 h)"
    )
    attempt_count: int = Field(ge=0)
    next_attempt_at: datetime | None = Field(description="when pending: the next attempt")
    last_error: str | None
    created_at: datetime
    completed_at: datetime | None
    payload: dict[str, Any] = Field(description="the message as sent (`data` as frozen)")
    attempts: list[WebhookAttempt]


class WebhookDeliveryPage(_Response):
    items: list[WebhookDelivery] = Field(description="newest first")
    total: int = Field(ge=0)
    page: int = Field(ge=1)
    page_size: int = Field(ge=1, le=100)


class WebhookTestResult(_Response):
    message_id: str
    delivered: bool = Field(description="the endpoint answered 2xx")
    response_status: int | None
    latency_ms: int = Field(ge=0)
    response_body_excerpt: str | None
    error: str | None


class WebhookReplayStarted(_Response):
    endpoint_id: uuid.UUID
    since: datetime
    status: Literal["started"]


class WebhookCallMessage(_Response):
    """A call's webhook message: `data` is the call as GET /calls/{call_id} showed it when
    the event was turned into a message (frozen: every attempt sends the same)."""

    id: str = Field(description="the message id, also the `webhook-id` header: deduplicate on it")
    type: WebhookEventType
    created_at: datetime = Field(description="when the event happened")
    data: Call


class WebhookBatchMessage(_Response):
    """A batch's webhook message (`batch.completed`, `batch.canceled`): `data` is the batch
    as GET /calls/batch/{batch_id} showed it."""

    id: str = Field(description="the message id, also the `webhook-id` header")
    type: Literal["batch.completed", "batch.canceled"]
    created_at: datetime
    data: Batch


class ListCallsQuery(BaseModel):
    """The query parameters of GET /calls (validated by the call log, which serves the list)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    page: int = Field(default=1, ge=1, le=1_000_000, description="1-based")
    page_size: int = Field(default=20, ge=1, le=100)
    direction: Literal["inbound", "outbound"] | None = None
    status: CallStatus | Outcome | None = Field(
        default=None,
        description="a status or an outcome; `completed` is read as the status",
    )
    search: str | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        pattern=r"^[^\x00]*$",
        description="any part of the from or to number, matched literally",
    )
    agent_id: uuid.UUID | None = None
    from_: AwareDatetime | None = Field(
        default=None, alias="from", description="start_time at or after (ISO 8601, with offset)"
    )
    to: AwareDatetime | None = Field(
        default=None, description="start_time before (ISO 8601, with offset)"
    )
