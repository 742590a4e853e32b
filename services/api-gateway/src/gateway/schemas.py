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

from calls_events import (
    BatchCallStatus,
    BatchStatus,
    CallingWindow,
    CallStatus,
    CarrierStatus,
    Outcome,
    ProviderUse,
    TranscriptTurn,
    WebhookEventType,
)
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

from .models import PhoneNumber

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
EXTENSION: Final = "Extension (not in the Calls API reference): "


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
    duplicates_dropped: int = Field(
        ge=0, description=EXTENSION + "numbers listed more than once, dialed once"
    )


class BatchCanceled(_Response):
    batch_id: BatchId
    status: Literal["canceled"]


class BatchCall(_Response):
    call_id: uuid.UUID = Field(description=EXTENSION + "the call's id (GET /calls/{call_id})")
    to_number: str
    status: BatchCallStatus = Field(
        description="the count this call is in: queued (not dialed yet), initiated (the "
        "carrier accepted it, whatever came next), failed (refused, busy, no answer, failed at "
        "the carrier), canceled (extension: its batch was canceled)"
    )
    call_status: CallStatus = Field(description=EXTENSION + "the call's status, live")
    carrier_status: CarrierStatus | None = Field(
        description=EXTENSION + "the carrier's status of the call, null until dialed"
    )
    outcome: Outcome | None = Field(description=EXTENSION + "the call's outcome, once ended")
    call_sid: str | None = Field(description="the carrier's SID; null until it gave one")
    error: str | None = Field(description="why the call failed or was canceled; null otherwise")
    attempt: int = Field(ge=1, description=EXTENSION + "which attempt at the recipient this is")
    attempts: int = Field(
        ge=1, description=EXTENSION + "calls made to this recipient so far (retries included)"
    )


class Batch(_Response):
    batch_id: BatchId
    status: BatchStatus = Field(description=EXTENSION + "the batch as a whole")
    total: int = Field(ge=0)
    queued: int = Field(ge=0)
    initiated: int = Field(ge=0, description="every call the carrier accepted")
    failed: int = Field(ge=0)
    canceled: int = Field(ge=0, description=EXTENSION + "calls its cancel stopped")
    duplicates_dropped: int = Field(
        ge=0, description=EXTENSION + "numbers listed more than once, dialed once"
    )
    created_at: datetime = Field(description=EXTENSION + "when the batch was accepted")
    paused: bool = Field(description=EXTENSION + "nothing more is dialed until resumed")
    calls: list[BatchCall] = Field(
        description="in submission order; each recipient's latest attempt"
    )


class BatchPauseState(_Response):
    batch_id: BatchId
    status: BatchStatus
    paused: bool


class CallSummary(_Response):
    """A call as GET /calls lists it."""

    id: uuid.UUID = Field(description="the call's id (the call_id POST /calls answered)")
    call_id: uuid.UUID = Field(description=EXTENSION + "the same as id")
    call_sid: CallSid
    direction: Literal["inbound", "outbound"]
    status: CallStatus = Field(
        description="queued (not dialed yet), in-progress (dialed, ringing or talking), "
        "completed, failed (docs/api.md maps every carrier status and ending)"
    )
    carrier_status: CarrierStatus | None = Field(
        description=EXTENSION + "the carrier's status of the call (Twilio's lifecycle), null "
        "until dialed"
    )
    outcome: Outcome | None = Field(
        description="null until the call has ended; completed, voicemail, invalid_number, "
        "caller_hangup, and the extensions busy, no_answer, canceled, failed"
    )
    from_number: str
    to_number: str
    agent_id: uuid.UUID | None = Field(description=EXTENSION + "the agent that handled the call")
    agent_name: str | None
    batch_id: BatchId | None = Field(description=EXTENSION + "the batch it was placed in")
    created_at: datetime
    start_time: datetime = Field(
        description="when the carrier started the call; until it has, when it was queued "
        "(the list is ordered by it)"
    )
    end_time: datetime | None
    duration: float | None = Field(description="seconds of conversation, once ended")
    error_reason: str | None = Field(description="why the call failed, or was canceled")


class Call(CallSummary):
    """A call with everything known about it."""

    error_code: int | None = Field(description=EXTENSION + "the carrier's error code")
    answered_by: str | None = Field(
        description=EXTENSION + "answering-machine detection: human, machine_…"
    )
    transcript: list[TranscriptTurn] | None = Field(description="null until reported")
    provider_usage: dict[str, ProviderUse] | None = Field(description="null until reported")
    recording_url: str | None = Field(
        description="`call-<call_sid>.wav` once the recording is stored; fetch it from "
        "GET /calls/{call_id}/recording"
    )
    # extensions (campaigns)
    variables: dict[str, str] = Field(
        description=EXTENSION + "handed to the voice agent with the call"
    )
    metadata: dict[str, JsonValue] = Field(description=EXTENSION + "as given with the request")
    attempt: int = Field(ge=1, description=EXTENSION + "which attempt at the recipient this is")
    previous_call_id: uuid.UUID | None = Field(
        description=EXTENSION + "the attempt before this one"
    )
    first_call_id: uuid.UUID | None = Field(description=EXTENSION + "the recipient's first call")
    next_call_id: uuid.UUID | None = Field(
        description=EXTENSION + "the retry this call's end led to"
    )
    not_before: datetime | None = Field(
        description=EXTENSION + "put off until then (calling window, start_at, daily cap)"
    )


class CallPage(_Response):
    items: list[CallSummary] = Field(description="newest first")
    total: int = Field(ge=0)
    page: int = Field(ge=1)
    page_size: int = Field(ge=1, le=100)


class ConversationRecorded(_Response):
    call_id: uuid.UUID
    status: Literal["recorded"]


class DoNotCallEntry(_Response):
    number: PhoneNumber
    reason: str | None
    added_at: datetime


class DoNotCallPage(_Response):
    items: list[DoNotCallEntry] = Field(description="most recently added first")
    total: int = Field(ge=0)
    page: int = Field(ge=1)
    page_size: int = Field(ge=1, le=500)


class CallingPolicy(_Response):
    window: CallingWindow | None = Field(description="the window of calls that set none")
    max_concurrency: int | None = Field(description="calls in flight at once, at most")
    daily_cap_per_number: int | None = Field(description="calls to one number per 24 h, at most")


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


class _WebhookReplayFields(_Response):
    id: uuid.UUID = Field(description="the replay's id: `GET …/replays/{replay_id}` follows it")
    endpoint_id: uuid.UUID
    since: datetime
    queued: int = Field(ge=0, description="messages queued again so far")
    created_at: datetime
    finished_at: datetime | None


class WebhookReplayStarted(_WebhookReplayFields):
    status: Literal["started"]


class WebhookReplay(_WebhookReplayFields):
    status: Literal["running", "done"] = Field(
        description="`running` until every message since `since` is queued again"
    )


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
        description="a status or an outcome; `completed` is read as the status. A carrier "
        "status that is neither (initiated, ringing, no-answer) is a 422",
    )
    search: str | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        pattern=r"^[^\x00]*$",
        description="any part of the from or to number, matched literally",
    )
    agent_id: uuid.UUID | None = Field(
        default=None, description=EXTENSION + "calls handled by this agent"
    )
    from_: AwareDatetime | None = Field(
        default=None,
        alias="from",
        description=EXTENSION + "start_time at or after (ISO 8601, with offset)",
    )
    to: AwareDatetime | None = Field(
        default=None, description=EXTENSION + "start_time before (ISO 8601, with offset)"
    )
