"""The call state machine and outcome rules: how events fold into what a call log shows.

Pure: no I/O. Carrier reports can arrive late, twice or out of order; a call's status only
ever moves forward, and a terminal status is final.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from calls_events import (
    CARRIER_PROGRESS,
    TERMINAL_CALL_STATUSES,
    CallCanceled,
    CallExpired,
    CallFailed,
    CallInitiated,
    CallRequested,
    CallRetryScheduled,
    CallScheduled,
    CallSkipped,
    CallStatus,
    CallStatusReported,
    CarrierStatus,
    ConversationReported,
    Event,
    InboundCallReceived,
    Outcome,
    RecordingDeleted,
    RecordingStored,
    is_placeholder_call_sid,
    placeholder_call_sid,
)

# the events `apply` folds into a call's view (the projector passes it only these)
CALL_EVENTS: Final = (
    CallRequested,
    CallInitiated,
    CallStatusReported,
    CallFailed,
    CallCanceled,
    ConversationReported,
    InboundCallReceived,
    RecordingStored,
    RecordingDeleted,
    CallScheduled,
    CallSkipped,
    CallExpired,
    CallRetryScheduled,
)

# Statuses of the reference (libs/events is their one definition), named for the rules below.
QUEUED: Final[CallStatus] = "queued"
IN_PROGRESS: Final[CallStatus] = "in-progress"
COMPLETED: Final[CallStatus] = "completed"
FAILED: Final[CallStatus] = "failed"

# The carrier's status → ours (table in docs/api.md): whatever the carrier is doing with a
# call it accepted is in-progress; busy, no-answer and canceled are failures whose outcome
# says which.
FROM_CARRIER: Final[dict[CarrierStatus, CallStatus]] = {
    "queued": IN_PROGRESS,
    "initiated": IN_PROGRESS,
    "ringing": IN_PROGRESS,
    "in-progress": IN_PROGRESS,
    "completed": COMPLETED,
    "busy": FAILED,
    "no-answer": FAILED,
    "failed": FAILED,
    "canceled": FAILED,
}

# Carrier error codes meaning the number itself is wrong or unreachable.
INVALID_NUMBER_CODES: Final = frozenset({13223, 13224, 21211, 21214, 21215, 21216, 21217, 21401})


def carrier_rank(carrier_status: str | None) -> int:
    """How far the carrier has taken a call: 0 not dialed, then the carrier's progress
    statuses in order, a terminal status last."""
    if carrier_status is None:
        return 0
    if carrier_status in CARRIER_PROGRESS:
        return 1 + CARRIER_PROGRESS.index(carrier_status)
    return 1 + len(CARRIER_PROGRESS)


@dataclass(frozen=True)
class CallView:
    """One row of the call log."""

    call_id: uuid.UUID
    organization_id: str
    direction: str
    status: CallStatus
    call_sid: str  # the placeholder until the carrier gives its SID
    from_number: str
    to_number: str
    created_at: datetime
    last_position: int
    carrier_status: CarrierStatus | None = None  # None until dialed
    canceled: bool = False  # its batch was canceled before it was dialed
    error_code: int | None = None
    error_reason: str | None = None
    agent_id: uuid.UUID | None = None
    agent_name: str | None = None
    batch_id: str | None = None
    batch_index: int | None = None
    answered_by: str | None = None
    ended_by: str | None = None
    last_sequence: int | None = None
    start_time: datetime | None = None  # the first sign the carrier started it
    end_time: datetime | None = None
    duration: float | None = None
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
    dial_outcome: Outcome | None = None

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_CALL_STATUSES

    @property
    def outcome(self) -> Outcome | None:
        return derive_outcome(self)

    def as_row(self) -> dict[str, Any]:
        """The view's fields by name (values shared, not copied: a view is immutable and the
        row is only serialized), and its outcome."""
        row = dict(vars(self))
        row["outcome"] = self.outcome
        return row


def derive_outcome(view: CallView) -> Outcome | None:
    """The one place outcomes are decided (table in docs/api.md)."""
    if not view.ended:
        return None
    if view.canceled or view.carrier_status == "canceled":
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


def _started(view: CallView, candidate: datetime) -> datetime:
    """The earliest sign the call started, so the order reports arrive in does not matter;
    never before it was queued (the carrier's timestamps are whole seconds)."""
    earliest = candidate if view.start_time is None else min(view.start_time, candidate)
    return max(earliest, view.created_at)


def _end(view: CallView, status: CallStatus, at: datetime, **changes: Any) -> CallView:
    """End the call with `status` (a terminal status is final)."""
    if view.ended:
        return view
    return replace(view, status=status, end_time=view.end_time or at, **changes)


def _carrier_sid(view: CallView, call_sid: str) -> str:
    """The carrier's SID replaces the placeholder; the first SID it gave stands."""
    return call_sid if is_placeholder_call_sid(view.call_sid) else view.call_sid


def _first_view(
    event: CallRequested | InboundCallReceived,
    organization_id: str,
    position: int,
    **fields: Any,
) -> CallView:
    """A call's first view: who called whom, for which agent, and what the event adds."""
    return CallView(
        organization_id=organization_id,
        last_position=position,
        call_id=event.call_id,
        from_number=event.from_number,
        to_number=event.to_number,
        agent_id=event.agent_id,
        agent_name=event.agent_name,
        **fields,
    )


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
        return _first_view(
            event,
            organization_id,
            position,
            direction="outbound",
            status=QUEUED,
            call_sid=placeholder_call_sid(event.call_id),
            batch_id=event.batch_id,
            batch_index=event.batch_index,
            created_at=at,
            variables=dict(event.variables),
            metadata=dict(event.metadata),
            attempt=event.attempt,
            previous_call_id=event.previous_call_id,
            first_call_id=event.first_call_id,
        )
    if isinstance(event, InboundCallReceived):
        if view is not None:
            return view  # the carrier retried its webhook: the first one stands
        return _first_view(
            event,
            organization_id,
            position,
            direction="inbound",
            status=IN_PROGRESS,
            carrier_status="ringing",
            call_sid=event.call_sid,
            created_at=event.received_at,
            start_time=event.received_at,
        )
    if view is None:
        return None
    view = replace(view, last_position=max(view.last_position, position))

    if isinstance(event, ConversationReported):
        # a later report supersedes an earlier one (the runtime may correct itself)
        # an empty report is "none": null, as the reference has it
        return replace(
            view,
            transcript=[turn.model_dump() for turn in event.transcript] or None,
            provider_usage={name: use.model_dump() for name, use in event.provider_usage.items()}
            or None,
            ended_by=event.ended_by,
        )

    if isinstance(event, RecordingStored):
        # only once the audio is stored: the link never points at a recording that 404s
        return replace(view, recording_url=recording_name(_carrier_sid(view, event.call_sid)))

    if isinstance(event, RecordingDeleted):
        return replace(view, recording_url=None)

    if isinstance(event, CallInitiated):
        # the carrier accepted it: its call resource says queued until it reports more
        view = replace(
            view,
            call_sid=_carrier_sid(view, event.call_sid),
            start_time=_started(view, at),
        )
        if view.ended or view.carrier_status is not None:
            return view
        return replace(view, status=IN_PROGRESS, carrier_status="queued")

    if isinstance(event, CallStatusReported):
        return _apply_report(view, event)

    if isinstance(event, CallFailed):
        return _end(view, FAILED, at, error_code=event.error_code, error_reason=event.error_message)

    if isinstance(event, CallCanceled):
        return _end(view, FAILED, at, canceled=True, error_reason=event.reason)

    if isinstance(event, CallScheduled):
        return view if view.ended else replace(view, not_before=event.not_before)

    if isinstance(event, CallRetryScheduled):
        return replace(view, next_call_id=event.retry_call_id)

    if isinstance(event, CallSkipped | CallExpired):
        outcome: Outcome
        outcome, reason = (
            ("do_not_call", "the number is on the do-not-call list")
            if isinstance(event, CallSkipped)
            else ("expired", f"not placed by its end_at ({event.end_at.isoformat()})")
        )
        return _end(view, FAILED, at, dial_outcome=outcome, error_reason=reason)

    return view


def _apply_report(view: CallView, report: CallStatusReported) -> CallView:
    changes: dict[str, Any] = {"call_sid": _carrier_sid(view, report.call_sid)}
    if report.answered_by and not view.answered_by:
        changes["answered_by"] = report.answered_by
    if report.sequence_number is not None:
        changes["last_sequence"] = max(view.last_sequence or -1, report.sequence_number)
    if report.carrier_status != "queued":
        changes["start_time"] = _started(view, report.reported_at)
    view = replace(view, **changes)
    if view.ended or carrier_rank(report.carrier_status) <= carrier_rank(view.carrier_status):
        return view  # late, repeated or out of order: a call never moves backwards
    status = FROM_CARRIER[report.carrier_status]
    if status not in TERMINAL_CALL_STATUSES:
        return replace(view, status=status, carrier_status=report.carrier_status)
    terminal: dict[str, Any] = {"carrier_status": report.carrier_status}
    if report.duration_seconds is not None:
        terminal["duration"] = float(report.duration_seconds)
    elif status == COMPLETED:
        terminal["duration"] = 0.0
    if status == FAILED:
        terminal["error_reason"] = view.error_reason or _CARRIER_FAILURE[report.carrier_status]
    return _end(view, status, report.reported_at, **terminal)


_CARRIER_FAILURE: Final[dict[CarrierStatus, str]] = {
    "busy": "the line was busy",
    "no-answer": "there was no answer",
    "failed": "the carrier could not connect the call",
    "canceled": "canceled at the carrier before it was answered",
}
