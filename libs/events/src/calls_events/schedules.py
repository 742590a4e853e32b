"""The campaign rules a call carries in its CallRequested: schedule, calling window, retry
policy, and the bounds of its per-call variables and metadata."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# "09:00" or "09:00:30" (seconds let a test open a window a few seconds from now)
LocalTime = Annotated[
    str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$")
]
RetryOn = Literal["busy", "no_answer", "voicemail", "failed"]

# Bounds of per-call data (the gateway answers 422 past them)
MAX_VARIABLES = 50
MAX_VARIABLE_NAME = 64
MAX_VARIABLE_VALUE = 1_000
MAX_METADATA_BYTES = 8_192
VariableName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", max_length=MAX_VARIABLE_NAME)
]


def zone_checked(value: str) -> str:
    """`value` if it is an IANA time zone name, else ValueError."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone, e.g. Europe/Paris") from None
    return value


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CallingWindow(_Part):
    """When a call may ring: local `start` to `end` (end exclusive; an end before the start
    spans midnight and belongs to the day it starts; an end equal to the start is the whole
    day) on `days`, in `time_zone`: an IANA name, or "recipient" (the zones of the number
    itself, and it must be open in every one of them)."""

    start: LocalTime
    end: LocalTime
    days: tuple[Weekday, ...] = WEEKDAYS
    time_zone: str = Field(default="recipient", max_length=64)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value == "recipient":
            return value
        try:
            return zone_checked(value)
        except ValueError:
            raise ValueError(
                'must be "recipient" or an IANA time zone, e.g. Europe/Paris'
            ) from None

    @field_validator("days")
    @classmethod
    def _some_days(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must name at least one day")
        return value


class Schedule(_Part):
    start_at: datetime | None = None
    end_at: datetime | None = None
    window: CallingWindow | None = None


class RetryPolicy(_Part):
    max_attempts: int = Field(ge=1, le=5)
    on: tuple[RetryOn, ...] = ("busy", "no_answer")
    delay_seconds: float = Field(default=300.0, ge=0, le=7 * 24 * 3600)
    # each further attempt waits delay * backoff ** (attempt - 2)
    backoff: float = Field(default=1.0, ge=1.0, le=10.0)
