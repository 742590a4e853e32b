"""A status the dialer learned by asking the carrier is reported as of the carrier's end time,
so it arrives (stored after the callbacks, occurred "earlier" than some of them): the call
ends at the carrier's end time, and nothing moves backwards (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from call_log.domain import COMPLETED, IN_PROGRESS, CallView, apply
from calls_events import CallInitiated, CallRequested, CallStatusReported, CarrierStatus, Event

CALL_ID = uuid.UUID("00000000-0000-4000-8000-0000000000d1")
SID = "CA" + "2" * 32
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fold(*events: tuple[Event, datetime]) -> CallView:
    """Apply events in store order; each with its envelope's occurred_at."""
    view: CallView | None = None
    for position, (event, occurred) in enumerate(events, start=1):
        view = apply(view, event, organization_id="org_a", position=position, at=occurred)
    assert view is not None
    return view


def requested() -> tuple[Event, datetime]:
    event = CallRequested(
        call_id=CALL_ID, to_number="+15551230001", from_number="+15551230002", requested_by="k"
    )
    return event, T0


def initiated() -> tuple[Event, datetime]:
    return CallInitiated(call_id=CALL_ID, call_sid=SID), at(1)


def callback(status: CarrierStatus, seconds: float, **fields: int) -> tuple[Event, datetime]:
    event = CallStatusReported(
        call_id=CALL_ID, call_sid=SID, carrier_status=status, reported_at=at(seconds), **fields
    )
    return event, at(seconds)


def reconciled(
    status: CarrierStatus, ended_at: float, recorded_at: float, **fields: int
) -> tuple[Event, datetime]:
    """The watchdog's report: reported_at = the carrier's end time; stored (occurred_at)
    when the watchdog asked, later."""
    event = CallStatusReported(
        call_id=CALL_ID,
        call_sid=SID,
        carrier_status=status,
        reported_at=at(ended_at),
        source="reconciliation",
        **fields,
    )
    return event, at(recorded_at)


def test_a_reconciled_end_sets_end_time_to_when_the_call_ended_at_the_carrier() -> None:
    view = fold(
        requested(),
        initiated(),
        callback("in-progress", 2),
        # callbacks lost from here; the watchdog asks two minutes after the call ended
        reconciled("completed", ended_at=10, recorded_at=130, duration_seconds=8),
    )

    assert (view.status, view.end_time, view.duration) == (COMPLETED, at(10), 8)
    assert view.start_time == at(1)  # not moved by the (later) end time


def test_a_reconciled_end_before_the_last_callback_still_only_moves_forward() -> None:
    # a carrier clock a little behind ours: its end time is before our last callback's time
    view = fold(
        requested(),
        initiated(),
        callback("in-progress", 5),
        reconciled("completed", ended_at=4, recorded_at=130, duration_seconds=0),
    )

    assert (view.status, view.end_time) == (COMPLETED, at(4))
    assert view.start_time == at(1)


def test_a_reconciled_end_after_the_callbacks_end_changes_nothing() -> None:
    ended = fold(
        requested(),
        initiated(),
        callback("in-progress", 2),
        callback("completed", 10, duration_seconds=8),
    )

    after = apply(
        ended,
        reconciled("completed", ended_at=9, recorded_at=130, duration_seconds=7)[0],
        organization_id="org_a",
        position=99,
        at=at(130),
    )

    assert after is not None
    assert (after.status, after.end_time, after.duration) == (COMPLETED, at(10), 8)
    assert after.start_time == ended.start_time


def test_a_late_callback_after_a_reconciled_end_changes_nothing() -> None:
    reconciled_view = fold(
        requested(),
        initiated(),
        reconciled("completed", ended_at=10, recorded_at=130, duration_seconds=8),
    )

    after = fold(
        requested(),
        initiated(),
        reconciled("completed", ended_at=10, recorded_at=130, duration_seconds=8),
        callback("in-progress", 3),
        callback("completed", 11, duration_seconds=9),
    )

    assert (after.status, after.end_time, after.duration) == (COMPLETED, at(10), 8)
    assert after.start_time == reconciled_view.start_time == at(1)


def test_a_reconciled_in_progress_report_is_not_an_end() -> None:
    view = fold(requested(), initiated(), reconciled("in-progress", ended_at=3, recorded_at=3))
    assert (view.status, view.end_time) == (IN_PROGRESS, None)
