"""The call state machine and outcome rules: how events fold into what a call log shows.

Pure: no I/O. Carrier reports can arrive late, twice or out of order; a call's status only
ever moves forward, and a terminal status is final.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from calls_events import (
    CallCanceled,
    CallExpired,
    CallFailed,
    CallInitiated,
    CallRequested,
    CallRetryScheduled,
    CallScheduled,
    CallSkipped,
    CallStatusReported,
    ConversationReported,
    Event,
    InboundCallReceived,
    RecordingDeleted,
    RecordingStored,
)

# What clients see, in the order a call moves through them.
QUEUED: Final = "queued"
INITIATED: Final = "initiated"
RINGING: Final = "ringing"
IN_PROGRESS: Final = "in-progress"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
CANCELED: Final = "canceled"

STATUSES: Final = (QUEUED, INITIATED, RINGING, IN_PROGRESS, COMPLETED, FAILED, CANCELED)
TERMINAL: Final = frozenset({COMPLETED, FAILED, CANCELED})
_RANK: Final = {QUEUED: 0, INITIATED: 1, RINGING: 2, IN_PROGRESS: 3}

# The carrier's status → ours. busy and no-answer are failures whose outcome says which.
_FROM_CARRIER: Final = {
    "queued": INITIATED,
    "initiated": INITIATED,
    "ringing": RINGING,
    "in-progress": IN_PROGRESS,
    "completed": COMPLETED,
    "busy": FAILED,
    "no-answer": FAILED,
    "failed": FAILED,
    "canceled": CANCELED,
}

# Carrier error codes meaning the number itself is wrong or unreachable.
INVALID_NUMBER_CODES: Final = frozenset({13223, 13224, 21211, 21214, 21215, 21216, 21217, 21401})

OUTCOMES: Final = (
    "completed",
    "voicemail",
    "caller_hangup",
    "invalid_number",
    "busy",
    "no_answer",
    "canceled",
    "failed",
    "do_not_call",
    "expired",
)


def rank(status: str) -> int:
    return _RANK.get(status, 4)


@dataclass(frozen=True)
class CallView:
    """One row of the call log."""

    call_id: uuid.UUID
    organization_id: str
    direction: str
    status: str
    from_number: str
    to_number: str
    created_at: datetime
    last_position: int
    call_sid: str | None = None
    carrier_status: str | None = None
    error_code: int | None = None
    error_reason: str | None = None
    agent_id: uuid.UUID | None = None
    agent_name: str | None = None
    batch_id: str | None = None
    batch_index: int | None = None
    answered_by: str | None = None
    ended_by: str | None = None
    last_sequence: int | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: int | None = None
    transcript: list[dict[str, Any]] | None = None
    provider_usage: dict[str, Any] | None = None
    recording_url: str | None = None
    variables: dict[str, str] | None = None
    metadata: dict[str, Any] | None = None
    attempt: int = 1
    previous_call_id: uuid.UUID | None = None
    first_call_id: uuid.UUID | None = None
    next_call_id: uuid.UUID | None = None
    not_before: datetime | None = None
    # how the dialer ended a call it did not place: do_not_call or expired
    dial_outcome: str | None = None

    @property
    def outcome(self) -> str | None:
        return derive_outcome(self)

    def as_row(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["outcome"] = self.outcome
        return row


def derive_outcome(view: CallView) -> str | None:
    """The one place outcomes are decided (table in docs/api.md)."""
    if view.status not in TERMINAL:
        return None
    if view.status == CANCELED:
        return "canceled"
    if view.status == FAILED:
        if view.dial_outcome is not None:
            return view.dial_outcome
        if view.carrier_status == "busy":
            return "busy"
        if view.carrier_status == "no-answer":
            return "no_answer"
        if view.error_code in INVALID_NUMBER_CODES:
            return "invalid_number"
        return "failed"
    if view.answered_by and view.answered_by.startswith("machine"):
        return "voicemail"
    if view.ended_by == "caller":
        return "caller_hangup"
    return "completed"


def recording_name(call_sid: str) -> str:
    """What `recording_url` shows for a call whose recording is stored (served at
    GET /calls/{call_id}/recording)."""
    return f"call-{call_sid}.wav"


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    """The earliest sign the call started, so the order reports arrive in does not matter."""
    return candidate if current is None else min(current, candidate)


def _advance(view: CallView, status: str, at: datetime) -> CallView:
    """Move to `status` if that is forward; a terminal status is final."""
    if view.status in TERMINAL or rank(status) <= rank(view.status):
        return view
    changes: dict[str, Any] = {"status": status}
    if status in TERMINAL and view.end_time is None:
        changes["end_time"] = at
    return replace(view, **changes)


def apply(
    view: CallView | None,
    event: Event,
    *,
    organization_id: str,
    position: int,
    at: datetime,
) -> CallView | None:
    """Fold one event into a call's view. `at` is when the event occurred.

    Returns the new view (None if the event does not concern a known call).
    """
    if isinstance(event, CallRequested):
        if view is not None:
            return view  # replayed request: the first one stands
        return CallView(
            call_id=event.call_id,
            organization_id=organization_id,
            direction="outbound",
            status=QUEUED,
            from_number=event.from_number,
            to_number=event.to_number,
            agent_id=event.agent_id,
            agent_name=event.agent_name,
            batch_id=event.batch_id,
            batch_index=event.batch_index,
            created_at=at,
            last_position=position,
            variables=dict(event.variables),
            metadata=dict(event.metadata),
            attempt=event.attempt,
            previous_call_id=event.previous_call_id,
            first_call_id=event.first_call_id,
        )
    if isinstance(event, InboundCallReceived):
        if view is not None:
            return view  # the carrier retried its webhook: the first one stands
        return CallView(
            call_id=event.call_id,
            organization_id=organization_id,
            direction="inbound",
            status=RINGING,
            call_sid=event.call_sid,
            from_number=event.from_number,
            to_number=event.to_number,
            agent_id=event.agent_id,
            agent_name=event.agent_name,
            created_at=event.received_at,
            start_time=event.received_at,
            last_position=position,
        )
    if view is None:
        return None
    view = replace(view, last_position=max(view.last_position, position))

    if isinstance(event, ConversationReported):
        # a later report supersedes an earlier one (the runtime may correct itself)
        return replace(
            view,
            transcript=[turn.model_dump() for turn in event.transcript],
            provider_usage={name: use.model_dump() for name, use in event.provider_usage.items()},
            ended_by=event.ended_by,
        )

    if isinstance(event, RecordingStored):
        # only once the audio is stored: the link never points at a recording that 404s
        return replace(view, recording_url=recording_name(view.call_sid or event.call_sid))

    if isinstance(event, RecordingDeleted):
        return replace(view, recording_url=None)

    if isinstance(event, CallInitiated):
        view = replace(
            view,
            call_sid=view.call_sid or event.call_sid,
            start_time=_earliest(view.start_time, at),
        )
        return _advance(view, INITIATED, at)

    if isinstance(event, CallStatusReported):
        return _apply_report(view, event)

    if isinstance(event, CallFailed):
        if view.status in TERMINAL:
            return view
        view = replace(view, error_code=event.error_code, error_reason=event.error_message)
        return _advance(view, FAILED, at)

    if isinstance(event, CallCanceled):
        if view.status in TERMINAL:
            return view
        return _advance(replace(view, error_reason=event.reason), CANCELED, at)

    if isinstance(event, CallScheduled):
        return view if view.status in TERMINAL else replace(view, not_before=event.not_before)

    if isinstance(event, CallRetryScheduled):
        return replace(view, next_call_id=event.retry_call_id)

    if isinstance(event, CallSkipped | CallExpired):
        if view.status in TERMINAL:
            return view
        outcome, reason = (
            ("do_not_call", "the number is on the do-not-call list")
            if isinstance(event, CallSkipped)
            else ("expired", f"not placed by its end_at ({event.end_at.isoformat()})")
        )
        return _advance(replace(view, dial_outcome=outcome, error_reason=reason), FAILED, at)

    return view


def _apply_report(view: CallView, report: CallStatusReported) -> CallView:
    status = _FROM_CARRIER[report.carrier_status]
    changes: dict[str, Any] = {"call_sid": view.call_sid or report.call_sid}
    if report.answered_by and not view.answered_by:
        changes["answered_by"] = report.answered_by
    if report.sequence_number is not None:
        changes["last_sequence"] = max(view.last_sequence or -1, report.sequence_number)
    if report.carrier_status != "queued":
        changes["start_time"] = _earliest(view.start_time, report.reported_at)
    view = replace(view, **changes)
    if view.status in TERMINAL or rank(status) <= rank(view.status):
        return view
    if status in TERMINAL:
        terminal: dict[str, Any] = {"carrier_status": report.carrier_status}
        if report.duration_seconds is not None:
            terminal["duration"] = report.duration_seconds
        elif status == COMPLETED:
            terminal["duration"] = 0
        if status == FAILED:
            terminal["error_reason"] = view.error_reason or _CARRIER_FAILURE[report.carrier_status]

        view = replace(view, **terminal)
    return _advance(view, status, report.reported_at)


_CARRIER_FAILURE: Final = {
    "busy": "the line was busy",
    "no-answer": "there was no answer",
    "failed": "the carrier could not connect the call",
}
