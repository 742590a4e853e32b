"""The call state machine and outcome rules, pure: events in, a call log row out."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from call_log.domain import (
    COMPLETED,
    FAILED,
    FROM_CARRIER,
    IN_PROGRESS,
    QUEUED,
    CallView,
    apply,
    carrier_rank,
)
from call_log.queries import BatchCounts, batch_bucket, batch_status
from calls_events import (
    CALL_STATUSES,
    CARRIER_STATUSES,
    OUTCOMES,
    TERMINAL_CALL_STATUSES,
    CallCanceled,
    CallFailed,
    CallInitiated,
    CallRequested,
    CallStatusReported,
    CarrierStatus,
    ConversationReported,
    Event,
    InboundCallReceived,
    RecordingDeleted,
    RecordingFailed,
    RecordingReported,
    RecordingStored,
    placeholder_call_sid,
)
from hypothesis import given
from hypothesis import strategies as st

CALL_ID = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
SID = "CA" + "1" * 32
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ORG = "org_a"

# An event with when it occurred (the envelope's occurred_at).
Occurred = tuple[Event, datetime]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def requested(**overrides: Any) -> Occurred:
    fields: dict[str, Any] = {
        "call_id": CALL_ID,
        "to_number": "+15551230001",
        "from_number": "+15551230002",
        "requested_by": "key_1",
    }
    return CallRequested(**(fields | overrides)), T0


def initiated(seconds: float = 1, sid: str = SID) -> Occurred:
    return CallInitiated(call_id=CALL_ID, call_sid=sid), at(seconds)


def report(
    status: CarrierStatus,
    seconds: float,
    *,
    sequence: int | None = None,
    duration: int | None = None,
    answered_by: str | None = None,
) -> Occurred:
    event = CallStatusReported(
        call_id=CALL_ID,
        call_sid=SID,
        carrier_status=status,
        sequence_number=sequence,
        duration_seconds=duration,
        answered_by=answered_by,
        reported_at=at(seconds),
    )
    return event, at(seconds)


def failed(code: int | None, seconds: float = 1, message: str = "refused") -> Occurred:
    return CallFailed(call_id=CALL_ID, error_code=code, error_message=message), at(seconds)


def canceled(seconds: float = 1) -> Occurred:
    return CallCanceled(call_id=CALL_ID, reason="batch canceled"), at(seconds)


def fold(events: Iterable[Occurred], view: CallView | None = None) -> CallView:
    position = view.last_position if view else 0
    for event, when in events:
        position += 1
        view = apply(view, event, organization_id=ORG, position=position, at=when)
    assert view is not None
    return view


def call(*events: Occurred) -> CallView:
    """A call that was requested, then went through `events`."""
    return fold([requested(), *events])


def without_position(view: CallView) -> dict[str, Any]:
    row = view.as_row()
    del row["last_position"]
    return row


# --- requesting ------------------------------------------------------------------------------


def test_a_requested_call_is_queued_with_no_outcome() -> None:
    agent = uuid.uuid4()

    view = fold([requested(agent_id=agent, agent_name="Ada", batch_id="b1", batch_index=2)])

    assert view.status == QUEUED
    assert view.carrier_status is None  # not dialed
    assert view.outcome is None
    assert view.call_sid == placeholder_call_sid(CALL_ID) == f"queued-{CALL_ID.hex[:12]}"
    assert view.direction == "outbound"
    assert view.organization_id == ORG
    assert (view.to_number, view.from_number) == ("+15551230001", "+15551230002")
    assert (view.agent_id, view.agent_name, view.batch_id, view.batch_index) == (
        agent,
        "Ada",
        "b1",
        2,
    )
    assert view.created_at == T0
    assert view.start_time is None
    assert view.last_position == 1


def test_a_replayed_request_keeps_the_first() -> None:
    first = call(initiated())

    again = fold([requested(to_number="+15559999999")], first)

    assert without_position(again) == without_position(first)


@pytest.mark.parametrize(
    "event",
    [initiated(), report("ringing", 1), failed(21211), canceled()],
    ids=["initiated", "report", "failed", "canceled"],
)
def test_events_of_an_unknown_call_are_ignored(event: Occurred) -> None:
    assert apply(None, event[0], organization_id=ORG, position=1, at=event[1]) is None


def test_every_event_moves_last_position_forward() -> None:
    view = call(initiated(), report("ringing", 2))

    assert view.last_position == 3
    assert apply(view, initiated()[0], organization_id=ORG, position=2, at=at(1)) == view


# --- moving forward --------------------------------------------------------------------------


def test_status_moves_through_the_happy_path() -> None:
    steps = [
        initiated(1),
        report("ringing", 2),
        report("in-progress", 3),
        report("completed", 60, duration=57),
    ]

    statuses = [
        (view.status, view.carrier_status)
        for view in (call(*steps[: i + 1]) for i in range(len(steps)))
    ]

    assert statuses == [
        (IN_PROGRESS, "queued"),  # the carrier's call resource says queued when it is created
        (IN_PROGRESS, "ringing"),
        (IN_PROGRESS, "in-progress"),
        (COMPLETED, "completed"),
    ]


def test_initiated_replaces_the_placeholder_with_the_sid_and_records_start_time() -> None:
    view = call(initiated(1))

    assert (view.call_sid, view.start_time) == (SID, at(1))


def test_the_first_sid_the_carrier_gave_stands() -> None:
    view = call(initiated(1), initiated(2, sid="CA" + "9" * 32))

    assert view.call_sid == SID


def test_a_report_before_the_dial_is_recorded_also_replaces_the_placeholder() -> None:
    assert call(report("ringing", 1)).call_sid == SID


@pytest.mark.parametrize("carrier", ["queued", "initiated", "ringing", "in-progress"])
def test_every_carrier_progress_status_is_in_progress(carrier: CarrierStatus) -> None:
    view = call(report(carrier, 1))

    assert (view.status, view.carrier_status) == (IN_PROGRESS, carrier)


def test_every_carrier_status_maps_to_a_reference_status() -> None:
    assert set(FROM_CARRIER) == set(CARRIER_STATUSES)
    assert set(FROM_CARRIER.values()) <= set(CALL_STATUSES)


def test_a_queued_report_does_not_start_the_call() -> None:
    assert call(report("queued", 1)).start_time is None


@pytest.mark.parametrize(
    ("later", "seconds"),
    [("initiated", 5), ("queued", 5), ("ringing", 5)],
)
def test_status_never_moves_backwards(later: CarrierStatus, seconds: float) -> None:
    view = call(initiated(1), report("ringing", 2), report("in-progress", 3))

    after = fold([report(later, seconds)], view)

    assert (after.status, after.carrier_status) == (IN_PROGRESS, "in-progress")


def test_ringing_after_in_progress_converges_to_in_progress() -> None:
    in_order = call(initiated(1), report("ringing", 2), report("in-progress", 3))
    reversed_ = call(initiated(1), report("in-progress", 3), report("ringing", 2))

    assert without_position(in_order) == without_position(reversed_)
    assert (reversed_.status, reversed_.carrier_status) == (IN_PROGRESS, "in-progress")


def test_completed_twice_is_the_same_as_once() -> None:
    done = report("completed", 60, duration=57)
    once = call(initiated(1), report("in-progress", 3), done)
    twice = fold([done], once)

    assert without_position(twice) == without_position(once)
    assert (twice.status, twice.duration, twice.end_time) == (COMPLETED, 57.0, at(60))
    assert isinstance(twice.duration, float)


def test_start_time_is_the_earliest_sign_of_the_call_whatever_the_arrival_order() -> None:
    """The dialer commits CallInitiated when the carrier's API answers, which can be after the
    carrier's first status callback, or after the carrier's own timestamp of it."""
    initiated_first = call(initiated(3), report("ringing", 2))
    reported_first = call(report("ringing", 2), initiated(3))

    assert initiated_first.start_time == reported_first.start_time == at(2)
    assert initiated_first.carrier_status == reported_first.carrier_status == "ringing"
    assert initiated_first.status == reported_first.status == IN_PROGRESS
    assert initiated_first.call_sid == reported_first.call_sid == SID


def test_a_call_never_starts_before_it_was_queued() -> None:
    """The carrier's timestamps are whole seconds: its report of a call queued at 12:00:00.8
    may say 12:00:00."""
    queued_at = T0 + timedelta(milliseconds=800)
    view = fold([(requested()[0], queued_at), report("ringing", 0), report("in-progress", 3)])

    assert view.start_time == queued_at


# --- terminal is final -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "terminal",
    [
        report("completed", 60, duration=57),
        report("busy", 10),
        report("no-answer", 30),
        report("failed", 10),
        report("canceled", 10),
        failed(21211),
        failed(None),
        canceled(),
    ],
    ids=[
        "completed",
        "busy",
        "no-answer",
        "failed",
        "canceled",
        "CallFailed",
        "gave-up",
        "CallCanceled",
    ],
)
@pytest.mark.parametrize(
    "late",
    [
        report("ringing", 70),
        report("in-progress", 70),
        report("completed", 70, duration=99),
        report("busy", 70),
        report("canceled", 70),
        initiated(70),
        failed(21214, 70),
        canceled(70),
    ],
    ids=[
        "ringing",
        "in-progress",
        "completed",
        "busy",
        "canceled",
        "initiated",
        "failed",
        "cancel",
    ],
)
def test_a_terminal_status_is_final(terminal: Occurred, late: Occurred) -> None:
    ended = call(initiated(1), terminal)

    after = fold([late], ended)

    assert ended.status in TERMINAL_CALL_STATUSES
    assert (after.status, after.outcome, after.end_time, after.duration) == (
        ended.status,
        ended.outcome,
        ended.end_time,
        ended.duration,
    )
    assert (after.error_code, after.error_reason, after.carrier_status) == (
        ended.error_code,
        ended.error_reason,
        ended.carrier_status,
    )


def test_call_failed_after_completed_changes_nothing() -> None:
    done = call(initiated(1), report("completed", 60, duration=57))

    after = fold([failed(21211, 61)], done)

    assert without_position(after) == without_position(done)
    assert after.outcome == "completed"


def test_call_canceled_cancels_a_queued_call() -> None:
    view = call(canceled(5))

    assert (view.status, view.outcome, view.carrier_status) == (FAILED, "canceled", None)
    assert view.call_sid == placeholder_call_sid(CALL_ID)  # never dialed: still the placeholder
    assert view.error_reason == "batch canceled"
    assert view.end_time == at(5)
    assert view.start_time is None


def test_call_canceled_also_cancels_a_call_already_initiated() -> None:
    """apply does not look at how far a call got: any call not yet ended can be canceled.
    (The dialer only cancels calls it has not dialed, so this does not happen in practice.)"""
    view = call(initiated(1), report("ringing", 2), canceled(3))

    assert (view.status, view.outcome) == (FAILED, "canceled")


def test_canceled_at_the_carrier_is_a_failure_with_outcome_canceled() -> None:
    view = call(initiated(1), report("ringing", 2), report("canceled", 3))

    assert (view.status, view.carrier_status, view.outcome) == (FAILED, "canceled", "canceled")
    assert view.end_time == at(3)


def test_end_time_is_when_the_call_ended() -> None:
    view = call(initiated(1), report("in-progress", 3), report("completed", 60, duration=57))

    assert view.end_time == at(60)


# --- outcomes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "outcome"),
    [
        ([initiated(), report("in-progress", 2), report("completed", 9, duration=7)], "completed"),
        ([initiated(), report("completed", 9, duration=7, answered_by="human")], "completed"),
        ([initiated(), report("completed", 9, duration=7, answered_by="unknown")], "completed"),
        (
            [initiated(), report("completed", 9, duration=7, answered_by="machine_start")],
            "voicemail",
        ),
        (
            [initiated(), report("completed", 9, duration=7, answered_by="machine_end_beep")],
            "voicemail",
        ),
        (
            [
                initiated(),
                report("in-progress", 2, answered_by="machine_end_silence"),
                report("completed", 9, duration=7),
            ],
            "voicemail",
        ),
        ([failed(21211)], "invalid_number"),
        ([failed(21214)], "invalid_number"),
        ([failed(21217)], "invalid_number"),
        ([failed(13224)], "invalid_number"),
        ([failed(21610)], "failed"),  # a known code, but not about the number
        ([failed(None)], "failed"),
        ([initiated(), report("busy", 5)], "busy"),
        ([initiated(), report("ringing", 2), report("no-answer", 30)], "no_answer"),
        ([initiated(), report("failed", 5)], "failed"),
        ([initiated(), report("canceled", 5)], "canceled"),
        ([canceled()], "canceled"),
    ],
    ids=[
        "completed",
        "completed-human",
        "completed-unknown",
        "voicemail-start",
        "voicemail-beep",
        "voicemail-from-in-progress",
        "invalid-21211",
        "invalid-21214",
        "invalid-21217",
        "invalid-13224",
        "failed-other-code",
        "failed-no-code",
        "busy",
        "no-answer",
        "carrier-failed",
        "carrier-canceled",
        "canceled",
    ],
)
def test_outcome_table(events: list[Occurred], outcome: str) -> None:
    view = call(*events)

    assert view.outcome == outcome
    assert view.as_row()["outcome"] == outcome
    assert outcome in OUTCOMES
    assert view.status in TERMINAL_CALL_STATUSES


@pytest.mark.parametrize(
    "events",
    [[], [initiated()], [initiated(), report("ringing", 2)], [report("in-progress", 2)]],
    ids=["queued", "initiated", "ringing", "in-progress"],
)
def test_a_call_in_flight_has_no_outcome(events: list[Occurred]) -> None:
    assert call(*events).outcome is None


def test_busy_and_no_answer_are_failures_with_a_reason() -> None:
    busy = call(initiated(), report("busy", 5))
    no_answer = call(initiated(), report("no-answer", 30))

    assert (busy.status, busy.carrier_status, busy.error_reason) == (
        FAILED,
        "busy",
        "the line was busy",
    )
    assert (no_answer.status, no_answer.error_reason) == (FAILED, "there was no answer")


def test_call_failed_keeps_the_carrier_code_and_message() -> None:
    view = call(failed(21211, message="The 'To' number is not a valid phone number."))

    assert (view.status, view.error_code, view.error_reason) == (
        FAILED,
        21211,
        "The 'To' number is not a valid phone number.",
    )


def test_a_completed_call_without_duration_lasted_zero_seconds() -> None:
    duration = call(initiated(), report("completed", 9)).duration

    assert duration == 0.0
    assert isinstance(duration, float)


def test_a_failed_call_has_no_duration() -> None:
    assert call(initiated(), report("busy", 9)).duration is None


def test_last_sequence_is_the_highest_seen() -> None:
    view = call(initiated(), report("in-progress", 3, sequence=2), report("ringing", 2, sequence=1))

    assert view.last_sequence == 2


# --- inbound and conversations --------------------------------------------------------------


def test_an_inbound_call_is_in_progress_while_it_rings() -> None:
    event = InboundCallReceived.model_validate(
        {
            "call_id": CALL_ID,
            "call_sid": SID,
            "from_number": "+15551230001",
            "to_number": "+15551230002",
            "agent_id": uuid.uuid4(),
            "agent_name": "Ada",
            "received_at": at(1),
        }
    )

    view = fold([(event, at(1))])

    assert (view.direction, view.status, view.carrier_status) == ("inbound", IN_PROGRESS, "ringing")
    assert (view.call_sid, view.start_time) == (SID, at(1))


def test_a_conversation_report_without_turns_or_usage_leaves_them_null() -> None:
    empty = ConversationReported(call_id=CALL_ID, transcript=[], provider_usage={})

    view = fold([(empty, at(70))], call(*ended()))

    assert (view.transcript, view.provider_usage) == (None, None)


# --- convergence, for any arrival order ------------------------------------------------------

PROGRESS: tuple[CarrierStatus, ...] = ("queued", "initiated", "ringing", "in-progress")
TERMINALS: tuple[CarrierStatus | None, ...] = (
    None,
    "completed",
    "busy",
    "no-answer",
    "failed",
    "canceled",
)


@st.composite
def carrier_histories(draw: st.DrawFn) -> list[Occurred]:
    """What the dialer and the carrier report about one call, in the order it happened:
    CallInitiated, then some of the progress statuses and at most one way the call ended."""
    progress = sorted(draw(st.sets(st.sampled_from(PROGRESS))), key=PROGRESS.index)
    terminal = draw(st.sampled_from(TERMINALS))
    answered_by = draw(st.sampled_from([None, "human", "machine_start", "machine_end_beep"]))
    duration = draw(st.integers(min_value=0, max_value=3600))
    statuses = [*progress, terminal] if terminal else progress
    history = [initiated(draw(st.floats(min_value=0, max_value=2)))]
    for i, status in enumerate(statuses, start=1):
        history.append(
            report(
                status,
                i,
                sequence=i,
                duration=duration if status == "completed" else None,
                answered_by=answered_by if status in ("in-progress", "completed") else None,
            )
        )
    return history


@st.composite
def shuffled_with_repeats(draw: st.DrawFn, history: Sequence[Occurred]) -> list[Occurred]:
    repeats = draw(st.lists(st.sampled_from(history), max_size=len(history)))
    return list(draw(st.permutations([*history, *repeats])))


def converged(view: CallView) -> tuple[Any, ...]:
    return (view.status, view.outcome, view.duration, view.call_sid)


@given(st.data(), carrier_histories())
def test_any_order_and_any_repeats_of_a_calls_reports_converge(
    data: st.DataObject, history: list[Occurred]
) -> None:
    arrived = data.draw(shuffled_with_repeats(history))

    in_order, out_of_order = call(*history), call(*arrived)

    assert converged(out_of_order) == converged(in_order)
    # and so does everything else the call log shows about the call
    assert without_position(out_of_order) == without_position(in_order)


@given(st.data(), carrier_histories())
def test_a_calls_status_never_moves_backwards_whatever_arrives(
    data: st.DataObject, history: list[Occurred]
) -> None:
    order = [QUEUED, IN_PROGRESS, "ended"]
    view = fold([requested()])
    for event in data.draw(shuffled_with_repeats(history)):
        before = view
        view = fold([event], view)
        assert view.status in CALL_STATUSES
        rank_before = order.index("ended" if before.ended else before.status)
        rank_after = order.index("ended" if view.ended else view.status)
        assert rank_after >= rank_before
        assert carrier_rank(view.carrier_status) >= carrier_rank(before.carrier_status)
        if before.ended:
            assert (view.status, view.carrier_status) == (before.status, before.carrier_status)


@given(st.data(), carrier_histories())
def test_replaying_the_events_again_changes_nothing(
    data: st.DataObject, history: list[Occurred]
) -> None:
    arrived = data.draw(shuffled_with_repeats(history))
    view = call(*arrived)

    again = fold([requested(), *arrived], view)

    assert without_position(again) == without_position(view)


# --- batch status ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "cancel_requested", "status"),
    [
        (BatchCounts(queued=3), False, "queued"),
        (BatchCounts(queued=2, initiated=1), False, "in-progress"),
        (BatchCounts(queued=2, failed=1), False, "in-progress"),
        (BatchCounts(initiated=2, failed=1), False, "completed"),
        (BatchCounts(initiated=1, canceled=2), False, "completed"),
        (BatchCounts(queued=2, initiated=1), True, "canceled"),
        (BatchCounts(queued=3), True, "canceled"),
    ],
)
def test_batch_status(counts: BatchCounts, cancel_requested: bool, status: str) -> None:
    assert batch_status(counts, cancel_requested) == status


# test id: (events, bucket)
BUCKETS: dict[str, tuple[list[Occurred], str]] = {
    "queued": ([], "queued"),
    "dialed": ([initiated()], "initiated"),
    "ringing": ([initiated(), report("ringing", 2)], "initiated"),
    "completed": ([initiated(), report("completed", 9, duration=7)], "initiated"),
    "busy": ([initiated(), report("busy", 5)], "failed"),
    "no-answer": ([initiated(), report("no-answer", 30)], "failed"),
    "refused": ([failed(21211)], "failed"),
    "canceled": ([canceled()], "canceled"),
    "canceled-at-carrier": ([initiated(), report("canceled", 5)], "canceled"),
}


@pytest.mark.parametrize(("events", "bucket"), list(BUCKETS.values()), ids=list(BUCKETS))
def test_batch_bucket_of_a_call(events: list[Occurred], bucket: str) -> None:
    view = call(*events)

    assert batch_bucket(view.status, view.outcome) == bucket


def test_rows_carry_every_view_field_and_the_outcome() -> None:
    view = call(initiated(), report("completed", 9, duration=7))

    row = view.as_row()

    assert set(row) == {f.name for f in dataclasses.fields(CallView)} | {"outcome"}


# --- recordings ------------------------------------------------------------------------------

RECORDING_SID = "RE" + "2" * 32
# the ids every recording event of the call carries
RECORDING = {"call_id": CALL_ID, "call_sid": SID, "recording_sid": RECORDING_SID}


def recording_reported(seconds: float = 70) -> Occurred:
    event = RecordingReported.model_validate(
        {
            **RECORDING,
            "recording_url": "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/"
            + RECORDING_SID,
            "status": "completed",
            "duration_seconds": 57,
        }
    )
    return event, at(seconds)


def recording_stored(seconds: float = 72) -> Occurred:
    event = RecordingStored.model_validate(
        {
            **RECORDING,
            "storage_key": f"0123456789abcdef/{CALL_ID}/{RECORDING_SID}.wav",
            "size_bytes": 912_044,
            "content_type": "audio/wav",
            "duration_seconds": 57,
        }
    )
    return event, at(seconds)


def recording_deleted(seconds: float = 80) -> Occurred:
    event = RecordingDeleted(call_id=CALL_ID, recording_sid=RECORDING_SID, requested_by="u")
    return event, at(seconds)


def ended() -> list[Occurred]:
    return [initiated(1), report("in-progress", 3), report("completed", 60, duration=57)]


def test_a_call_has_no_recording_url_until_its_recording_is_stored() -> None:
    reported = call(*ended(), recording_reported())
    assert reported.recording_url is None
    failed_ = fold(
        [
            (
                RecordingFailed(
                    call_id=CALL_ID, recording_sid=RECORDING_SID, reason="x", attempts=5
                ),
                at(75),
            )
        ],
        reported,
    )
    assert failed_.recording_url is None


def test_a_stored_recording_is_named_after_the_call_sid() -> None:
    view = call(*ended(), recording_reported(), recording_stored())

    assert view.recording_url == f"call-{SID}.wav"
    # the recording changes nothing else about the call
    assert (view.status, view.outcome, view.duration) == (COMPLETED, "completed", 57)


def test_a_stored_recording_uses_the_sid_from_the_event_if_the_call_has_only_a_placeholder() -> (
    None
):
    # events of one call may be projected in any order relative to the carrier's reports
    view = call(recording_stored())

    assert view.recording_url == f"call-{SID}.wav"
    assert view.status == QUEUED


def test_a_deleted_recording_clears_the_recording_url() -> None:
    view = call(*ended(), recording_stored(), recording_deleted())

    assert view.recording_url is None


def test_a_repeated_recording_stored_changes_nothing() -> None:
    once = call(*ended(), recording_stored())
    twice = fold([recording_stored()], once)

    assert without_position(twice) == without_position(once)


def test_recording_events_of_an_unknown_call_are_ignored() -> None:
    event, when = recording_stored()
    assert apply(None, event, organization_id=ORG, position=1, at=when) is None
