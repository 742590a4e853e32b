"""Events of campaigns: calls put off, skipped, expired or retried by the dialer; batches
paused and resumed; numbers put on and off an organization's do-not-call list; an
organization's calling policy."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from ._base import Event
from .calls import E164
from .schedules import CallingWindow, RetryOn


def do_not_call_stream(organization_id: str) -> str:
    return f"do-not-call-{organization_id}"


def calling_policy_stream(organization_id: str) -> str:
    return f"calling-policy-{organization_id}"


class CallScheduled(Event):
    """The dialer put a call off until `not_before`: its calling window is closed (`window`),
    its schedule (or, for a retry, its delay) has not started (`start_at`), or its number has
    had the organization's daily share of calls (`daily_cap`)."""

    TYPE = "CallScheduled"

    call_id: uuid.UUID
    not_before: datetime
    reason: Literal["window", "start_at", "daily_cap"]


class CallSkipped(Event):
    """The dialer will not dial the call: the number is on the organization's do-not-call
    list (checked when the call's turn comes, so a number listed after the call was accepted
    is not dialed either)."""

    TYPE = "CallSkipped"

    call_id: uuid.UUID
    reason: Literal["do_not_call"]


class CallExpired(Event):
    """The call was not placed by its schedule's `end_at`; it never will be."""

    TYPE = "CallExpired"

    call_id: uuid.UUID
    end_at: datetime


class CallRetryScheduled(Event):
    """The call ended in a way its retry policy retries: `retry_call_id` (a new call, its own
    CallRequested) is attempt `attempt`, due no earlier than `not_before`."""

    TYPE = "CallRetryScheduled"

    call_id: uuid.UUID
    retry_call_id: uuid.UUID
    attempt: int = Field(ge=2)
    not_before: datetime
    because: RetryOn


class BatchPaused(Event):
    """Nothing more of the batch is dialed until it is resumed."""

    TYPE = "BatchPaused"

    batch_id: str
    requested_by: str


class BatchResumed(Event):
    TYPE = "BatchResumed"

    batch_id: str
    requested_by: str


class DoNotCallAdded(Event):
    """The organization asked never to call `number` (until it is removed)."""

    TYPE = "DoNotCallAdded"

    number: str = Field(pattern=E164)
    reason: str | None = Field(default=None, max_length=200)
    requested_by: str


class DoNotCallRemoved(Event):
    TYPE = "DoNotCallRemoved"

    number: str = Field(pattern=E164)
    requested_by: str


class CallingPolicySet(Event):
    """The organization's defaults: a calling window for calls that set none, at most
    `max_concurrency` of its calls in flight at once, at most `daily_cap_per_number` calls to
    one number in any 24 hours. None: no such rule."""

    TYPE = "CallingPolicySet"

    window: CallingWindow | None = None
    max_concurrency: int | None = Field(default=None, ge=1, le=10_000)
    daily_cap_per_number: int | None = Field(default=None, ge=1, le=1_000)
    requested_by: str
