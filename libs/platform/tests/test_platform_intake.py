"""The intake watchdog's decisions: which events of a batch are old enough to check, and which
noted readable head its checkpoint may move to."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from calls_events import CallRequested, Envelope, call_stream
from calls_platform import eventstore
from calls_platform.intake import HeadMarks, due

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(seconds=60)


def requested(seconds_ago: float, position: int) -> Envelope:
    call_id = uuid.uuid4()
    event = CallRequested(
        call_id=call_id, to_number="+14155550100", from_number="+14155550199", requested_by="test"
    )
    return Envelope.wrap(
        event,
        stream_id=call_stream(call_id),
        organization_id="org_a",
        occurred_at=NOW - timedelta(seconds=seconds_ago),
    ).model_copy(update={"position": position, "stream_version": 1})


def test_events_older_than_the_grace_are_due() -> None:
    batch = [requested(300, 1), requested(61, 2)]
    chosen = due(batch, now=NOW, grace=GRACE)
    assert list(chosen.events) == batch
    assert chosen.complete


def test_the_first_event_younger_than_the_grace_ends_what_is_due() -> None:
    """A prefix, not a filter: an older event after a young one waits with it, so the
    checkpoint never passes an event not yet checked."""
    batch = [requested(300, 1), requested(10, 2), requested(120, 3)]
    chosen = due(batch, now=NOW, grace=GRACE)
    assert list(chosen.events) == batch[:1]
    assert not chosen.complete


def test_nothing_is_due_in_an_empty_batch_or_one_that_starts_young() -> None:
    assert list(due([], now=NOW, grace=GRACE).events) == []
    young = due([requested(59, 1), requested(300, 2)], now=NOW, grace=GRACE)
    assert (list(young.events), young.complete) == ([], False)


def test_an_event_exactly_at_the_grace_is_due() -> None:
    assert len(due([requested(60, 1)], now=NOW, grace=GRACE).events) == 1


def head(position: int) -> eventstore.Checkpoint:
    return eventstore.Checkpoint(0, position)


def test_no_head_is_due_before_one_was_noted_the_grace_ago() -> None:
    marks = HeadMarks(GRACE)
    assert marks.due(NOW) == eventstore.START
    marks.note(NOW, head(10))
    assert marks.due(NOW + timedelta(seconds=59)) == eventstore.START
    assert marks.due(NOW + GRACE) == head(10)


def test_the_due_head_is_the_latest_noted_the_grace_ago() -> None:
    marks = HeadMarks(GRACE)
    for seconds, position in [(0, 10), (20, 20), (40, 30), (80, 40)]:
        marks.note(NOW + timedelta(seconds=seconds), head(position))
    assert marks.due(NOW + timedelta(seconds=100)) == head(30)
    assert marks.due(NOW + timedelta(seconds=140)) == head(40)


def test_a_tail_passing_all_day_keeps_only_the_marks_it_may_still_need() -> None:
    marks = HeadMarks(GRACE)
    for second in range(0, 86_400, 3):
        marks.note(NOW + timedelta(seconds=second), head(second))
    # the one noted a grace ago and the twenty younger ones, not 28,800
    assert len(marks) == 21
    last = NOW + timedelta(seconds=86_397)
    assert marks.due(last) == head(86_397 - 60)
