"""The dialer's campaign decisions (pure, the clock passed in): may this call ring now, and
does a call that ended get another attempt."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from calls_events import RetryOn, RetryPolicy, Schedule

from . import windows


@dataclass(frozen=True)
class DialNow:
    pass


@dataclass(frozen=True)
class Defer:
    until: datetime
    reason: Literal["window", "start_at", "daily_cap"]


@dataclass(frozen=True)
class Expire:
    end_at: datetime


@dataclass(frozen=True)
class Skip:
    reason: Literal["do_not_call"]


Decision = DialNow | Defer | Expire | Skip


def decide(
    *,
    to_number: str,
    schedule: Schedule | None,
    now: datetime,
    do_not_call: bool,
    cap_frees_at: datetime | None = None,
) -> Decision:
    """Whether a call may be dialed at `now`. A listed number is never dialed; past `end_at`
    the call expires; before `start_at`, outside its window or while its number has had its
    daily share (`cap_frees_at`: when the oldest call counted leaves the 24 hours), it waits,
    but never past `end_at` (it expires then)."""
    if do_not_call:
        return Skip("do_not_call")
    end_at = schedule.end_at if schedule else None
    if end_at is not None and now >= end_at:
        return Expire(end_at)
    wait: Defer | None = None
    if schedule is not None and schedule.start_at is not None and now < schedule.start_at:
        wait = Defer(schedule.start_at, "start_at")
    elif cap_frees_at is not None and now < cap_frees_at:
        wait = Defer(cap_frees_at, "daily_cap")
    elif schedule is not None and schedule.window is not None:
        zones = windows.zones_for(schedule.window, to_number)
        opens = windows.next_open(schedule.window, zones, now)
        if opens is None:
            # not within the horizon: look again then (or expire at end_at)
            opens = now + timedelta(days=windows.HORIZON_DAYS)
        if opens > now:
            wait = Defer(opens, "window")
    if wait is None:
        return DialNow()
    if end_at is not None and wait.until >= end_at:
        return Defer(end_at, wait.reason)  # expires when it comes round again
    return wait


# What a carrier's end means for a retry policy
def retry_reason(carrier_status: str, answered_by: str | None) -> RetryOn | None:
    if carrier_status == "busy":
        return "busy"
    if carrier_status == "no-answer":
        return "no_answer"
    if carrier_status == "failed":
        return "failed"
    if carrier_status == "completed" and answered_by and answered_by.startswith("machine"):
        return "voicemail"
    return None


@dataclass(frozen=True)
class Retry:
    attempt: int
    not_before: datetime
    because: RetryOn


def retry_after(
    policy: RetryPolicy | None,
    *,
    attempt: int,
    carrier_status: str,
    answered_by: str | None,
    now: datetime,
) -> Retry | None:
    """The next attempt at a recipient whose call (attempt `attempt`) ended this way, or None:
    never more attempts than `max_attempts`, only for the endings the policy names."""
    if policy is None or attempt >= policy.max_attempts:
        return None
    because = retry_reason(carrier_status, answered_by)
    if because is None or because not in policy.on:
        return None
    delay = policy.delay_seconds * policy.backoff ** (attempt - 1)
    return Retry(attempt=attempt + 1, not_before=now + timedelta(seconds=delay), because=because)


def retry_call_id(call_id: uuid.UUID) -> uuid.UUID:
    """The id of the attempt after `call_id`: derived, so scheduling it twice is one call."""
    return uuid.uuid5(call_id, "retry")
