"""Request parts of campaigns (extensions of POST /calls and POST /calls/batch): per-call
variables and metadata, schedule and calling window, retry policy; the bodies of the
do-not-call and calling-policy endpoints; and how a request becomes each call's rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from calls_events import CallingWindow, RetryPolicy, Schedule
from calls_events.schedules import (
    MAX_METADATA_BYTES,
    MAX_VARIABLE_VALUE,
    MAX_VARIABLES,
    VariableName,
)
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    model_validator,
)


def _metadata_size(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value, separators=(",", ":"))) > MAX_METADATA_BYTES:
        raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes as JSON")
    return value


Variables = Annotated[
    dict[VariableName, Annotated[str, StringConstraints(max_length=MAX_VARIABLE_VALUE)]],
    Field(
        max_length=MAX_VARIABLES,
        description="handed to the voice agent as <Parameter name value> entries of the call's"
        " <Connect><Stream> (string values; names start with a letter or _)",
        examples=[{"first_name": "Ada", "order_id": "A-1042"}],
    ),
]
Metadata = Annotated[
    dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], JsonValue],
    AfterValidator(_metadata_size),
    Field(
        description=f"your own data about the call, stored and returned as given"
        f" (at most {MAX_METADATA_BYTES} bytes as JSON)",
        examples=[{"crm_id": 42}],
    ),
]
TimeZone = Annotated[str, Field(description="an IANA time zone, e.g. America/Chicago")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduleBody(_Body):
    start_at: AwareDatetime | None = Field(default=None, description="not dialed before this")
    end_at: AwareDatetime | None = Field(
        default=None, description="not placed by then: the call ends with outcome `expired`"
    )
    window: CallingWindow | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ScheduleBody:
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError("end_at must be after start_at")
        return self

    def rules(self) -> Schedule:
        def utc(at: datetime | None) -> datetime | None:
            return at.astimezone(UTC) if at else None

        return Schedule(start_at=utc(self.start_at), end_at=utc(self.end_at), window=self.window)


Concurrency = Annotated[
    int, Field(ge=1, le=1_000, description="at most this many of the batch's calls in flight")
]


def call_schedule(
    schedule: ScheduleBody | None, default_window: CallingWindow | None, time_zone: str | None
) -> Schedule | None:
    """A call's schedule: the request's, with the organization's default window when it sets
    none, and a recipient's own zone over the window's."""
    rules = schedule.rules() if schedule else Schedule()
    window = rules.window or default_window
    if window is not None and time_zone is not None:
        window = window.model_copy(update={"time_zone": time_zone})
    rules = rules.model_copy(update={"window": window})
    if rules == Schedule():
        return None
    return rules


class DoNotCallBody(_Body):
    reason: Annotated[str, StringConstraints(max_length=200)] | None = None


class CallingPolicyBody(_Body):
    window: CallingWindow | None = Field(
        default=None, description="the window of every call that sets none"
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, le=10_000, description="at most this many calls in flight at once"
    )
    daily_cap_per_number: int | None = Field(
        default=None, ge=1, le=1_000, description="at most this many calls to one number per 24 h"
    )


__all__ = [
    "CallingPolicyBody",
    "Concurrency",
    "DoNotCallBody",
    "Metadata",
    "RetryPolicy",
    "ScheduleBody",
    "Variables",
    "call_schedule",
]
