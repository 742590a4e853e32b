"""Request bodies of the public API, validated with pydantic; the OpenAPI schemas come from here."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, NamedTuple

from calls_events import (
    E164,
    WEBHOOK_EVENT_TYPES,
    ProviderUse,
    TranscriptTurn,
    WebhookEventType,
)
from calls_events.conversations import Name as ProviderName
from calls_events.schedules import zone_checked
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .campaign_models import Concurrency, Metadata, RetryPolicy, ScheduleBody, TimeZone, Variables

PhoneNumber = Annotated[
    str,
    StringConstraints(pattern=E164),
    Field(description="E.164 phone number, e.g. +14155550100", examples=["+14155550100"]),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateAgent(_Body):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    phone_number: PhoneNumber
    # whether the agent's calls are recorded (a call may say otherwise with `record`)
    recording_enabled: StrictBool = True


Record = Annotated[
    StrictBool | None,
    Field(description="record this call; omitted: as the agent says (recorded by default)"),
]


class SipConfig(_Body):
    default_from_number: PhoneNumber | None


class PlaceCall(_Body):
    to_number: PhoneNumber
    from_number: PhoneNumber | None = None
    agent_id: uuid.UUID | None = None
    record: Record = None
    # extensions (campaigns)
    variables: Variables = Field(default_factory=dict)
    metadata: Metadata = Field(default_factory=dict)
    schedule: ScheduleBody | None = None
    retry: RetryPolicy | None = None


class Recipient(_Body):
    to_number: PhoneNumber
    variables: Variables = Field(default_factory=dict)
    metadata: Metadata = Field(default_factory=dict)
    time_zone: TimeZone | None = Field(
        default=None,
        description="this recipient's zone for the calling window, instead of the one the"
        " number implies",
    )

    @model_validator(mode="after")
    def _zone(self) -> Recipient:
        if self.time_zone is not None:
            zone_checked(self.time_zone)
        return self


class PlaceBatch(_Body):
    """`to_numbers`, `recipients` (an extension), or both (the numbers of `to_numbers` first)."""

    # before to_numbers, so that to_numbers' check sees them
    recipients: list[Recipient] = Field(
        default_factory=list,
        description="extension: numbers with their own variables, metadata and time zone",
    )
    to_numbers: list[PhoneNumber] = Field(default_factory=list, validate_default=True)
    from_number: PhoneNumber | None = None
    agent_id: uuid.UUID | None = None
    record: Record = None
    # extensions (campaigns)
    schedule: ScheduleBody | None = None
    retry: RetryPolicy | None = None
    max_concurrency: Concurrency | None = None

    @field_validator("to_numbers")
    @classmethod
    def _someone(cls, numbers: list[str], info: ValidationInfo) -> list[str]:
        # recipients missing from info.data failed their own validation: reported already
        if not numbers and info.data.get("recipients", [None]) == []:
            raise ValueError("must list at least one number (or give recipients)")
        return numbers

    def everyone(self) -> list[Callee]:
        """Every number in order, to_numbers first, each as a Callee (validated already: a
        Recipient made again of each of 10,000 to_numbers was a fifth of accepting them)."""
        return [Callee(n, {}, {}, None) for n in self.to_numbers] + [
            Callee(r.to_number, r.variables, r.metadata, r.time_zone) for r in self.recipients
        ]


class Callee(NamedTuple):
    """One number of a batch as the batch's calls are made from it: a `to_numbers` entry (no
    variables, metadata or zone of its own) or a recipient."""

    to_number: str
    variables: dict[str, Any]
    metadata: dict[str, Any]
    time_zone: str | None


class ReportConversation(_Body):
    """What the voice-agent runtime reports when a call ends."""

    transcript: list[TranscriptTurn] = Field(default_factory=list, max_length=5_000)
    provider_usage: dict[ProviderName, ProviderUse] = Field(default_factory=dict, max_length=50)
    ended_by: Literal["caller", "agent"] | None = None


Scope = Literal["calls:read", "calls:write", "webhooks:manage"]


def _every_scope() -> list[Scope]:
    return ["calls:read", "calls:write"]


class CreateApiKey(_Body):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    scopes: list[Scope] = Field(
        default_factory=_every_scope,
        min_length=1,
        description="what the key may do: calls:read (GET), calls:write (POST, PUT, DELETE),"
        " webhooks:manage (the /webhook-endpoints routes; not given unless asked for)",
    )


# --- webhook endpoints (validated here for a clear 4xx, and again by the webhooks service,
# which also checks where the URL resolves) ---

WebhookUrl = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
WebhookEvents = Annotated[
    list[WebhookEventType], Field(min_length=1, max_length=len(WEBHOOK_EVENT_TYPES))
]
WebhookDescription = Annotated[str, StringConstraints(max_length=500)]


class CreateWebhookEndpoint(_Body):
    url: WebhookUrl = Field(
        description="where to POST the messages: https, and a public address (private, "
        "loopback and link-local addresses are refused)"
    )
    events: WebhookEvents = Field(description="the event types to receive")
    description: WebhookDescription | None = None


class UpdateWebhookEndpoint(_Body):
    url: WebhookUrl | None = None
    events: WebhookEvents | None = None
    description: WebhookDescription | None = None
    enabled: StrictBool | None = Field(
        default=None, description="false stops deliveries (they wait); true resumes them"
    )


class ReplayWebhooks(_Body):
    since: AwareDatetime = Field(
        description="queue again every message of the endpoint's types since this moment"
    )
