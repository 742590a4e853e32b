"""The webhooks service's pure rules: which events become which messages, retry decisions
(with an injected clock and randomness), disabling, and choosing what to send."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import calls_events as ev
from calls_events import Envelope, Event, call_stream
from webhooks.domain import (
    BatchTally,
    Decision,
    RetryPolicy,
    StreamState,
    Translation,
    backoff_seconds,
    batch_completed,
    choose,
    classify,
    decide,
    is_batch_complete,
    parse_retry_after,
    should_disable,
    tally,
    translate,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CALL = uuid.UUID("550e8400-e29b-41d4-a716-446655440000")
BATCH = "batch-" + "ab" * 16


def stored(event: Event, position: int, stream: str | None = None) -> Envelope:
    return Envelope.wrap(
        event, stream_id=stream or call_stream(CALL), organization_id="org_a", occurred_at=T0
    ).model_copy(update={"position": position, "stream_version": position})


def status(carrier_status: str, seq: int) -> ev.CallStatusReported:
    return ev.CallStatusReported(
        call_id=CALL,
        call_sid="CA" + "0" * 32,
        carrier_status=carrier_status,
        sequence_number=seq,
        reported_at=T0,
    )


def requested(batch_id: str | None = None) -> ev.CallRequested:
    return ev.CallRequested(
        call_id=CALL,
        to_number="+14155550100",
        from_number="+14155550199",
        batch_id=batch_id,
        batch_index=0 if batch_id else None,
        requested_by="u",
    )


def fold(events: list[Event]) -> tuple[StreamState, list[str]]:
    state, types = StreamState(), []
    for i, event in enumerate(events, start=1):
        translation = translate(state, stored(event, i))
        state = translation.state
        types += [m.type for m in translation.messages]
    return state, types


def first_retry(**options: Any) -> Decision:
    """The decision after a first attempt, just made (at T0), that may be retried."""
    return decide(POLICY, outcome="retryable", attempts=1, first_attempt_at=T0, now=T0, **options)


def test_a_call_s_life_becomes_its_messages_in_order() -> None:
    state, types = fold(
        [
            requested(),
            ev.CallInitiated(call_id=CALL, call_sid="CA" + "0" * 32),
            status("initiated", 1),
            status("ringing", 2),
            status("in-progress", 3),
            status("completed", 4),
            ev.RecordingStored(
                call_id=CALL,
                call_sid="CA" + "0" * 32,
                recording_sid="RE" + "0" * 32,
                storage_key="k",
                size_bytes=1,
                content_type="audio/wav",
            ),
        ]
    )
    assert types == [
        "call.queued",
        "call.initiated",
        "call.answered",
        "call.ended",
        "recording.ready",
    ]
    assert state.next_version == 8


def test_a_status_reported_twice_is_one_message() -> None:
    _, types = fold([requested(), status("in-progress", 3), status("in-progress", 3)])
    assert types == ["call.queued", "call.answered"]


def test_a_call_ends_once_whether_it_failed_or_ended() -> None:
    _, types = fold(
        [requested(), ev.CallFailed(call_id=CALL, error_message="invalid"), status("failed", 9)]
    )
    assert types == ["call.queued", "call.failed"]


def test_a_call_the_dialer_did_not_place_fails_and_ends_in_its_batch() -> None:
    """Skipped (on the do-not-call list) or expired (past its end_at): its end is a
    call.failed, once, and counts towards its batch's completion."""
    for not_placed in (
        ev.CallSkipped(call_id=CALL, reason="do_not_call"),
        ev.CallExpired(call_id=CALL, end_at=T0),
    ):
        _, types = fold([requested(BATCH), not_placed, not_placed])
        assert types == ["call.queued", "call.failed"]
        queued = translate(StreamState(), stored(requested(BATCH), 1))
        ended = translate(queued.state, stored(not_placed, 2))
        assert ended.call_ended_in_batch == BATCH


def test_a_message_id_is_the_same_for_the_same_event() -> None:
    envelope = stored(requested(), 1)
    first = translate(StreamState(), envelope).messages[0]
    again = translate(StreamState(), envelope).messages[0]
    assert first.id == again.id
    assert first.id.startswith("msg_")
    assert first.sequence_key == call_stream(CALL)
    assert first.position == 1


def test_the_end_of_a_batch_call_counts_towards_the_batch() -> None:
    state = StreamState()
    t1 = translate(state, stored(requested(BATCH), 1))
    assert t1.call_ended_in_batch is None
    t2 = translate(t1.state, stored(status("completed", 4), 2))
    assert t2.call_ended_in_batch == BATCH
    assert [m.batch_id for m in t2.messages] == [BATCH]


def test_batch_events() -> None:
    accepted = ev.BatchRequested(
        batch_id=BATCH, total=2, from_number="+14155550199", requested_by="u"
    )
    t = translate(StreamState(), stored(accepted, 1, stream=BATCH))
    assert t.batch_total == (BATCH, 2)
    assert t.messages == ()
    cancel = ev.BatchCancelRequested(batch_id=BATCH, requested_by="u")
    t = translate(t.state, stored(cancel, 2, stream=BATCH))
    assert [m.type for m in t.messages] == ["batch.canceled"]
    assert not is_batch_complete(None, 5)
    assert not is_batch_complete(2, 1)
    assert is_batch_complete(2, 2)
    done = batch_completed(BATCH, "org_a", position=9, at=T0)
    assert done.sequence_key == BATCH
    assert done.type == "batch.completed"


def test_what_is_retried() -> None:
    assert classify(200) == classify(204) == "delivered"
    for status_code in (None, 408, 429, 500, 502, 503):
        assert classify(status_code) == "retryable"
    for status_code in (301, 400, 401, 404, 410, 422):
        assert classify(status_code) == "refused"


POLICY = RetryPolicy(base_seconds=60, max_seconds=3600, give_up_after_seconds=86400, jitter=0.5)


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    assert backoff_seconds(POLICY, 1, lambda: 0.0) == 30
    assert backoff_seconds(POLICY, 1, lambda: 1.0) == 60
    assert backoff_seconds(POLICY, 3, lambda: 1.0) == 240
    assert backoff_seconds(POLICY, 30, lambda: 1.0) == 3600


def test_a_retry_is_scheduled_by_the_injected_clock() -> None:
    now = T0 + timedelta(minutes=5)
    decision = decide(
        POLICY, outcome="retryable", attempts=2, first_attempt_at=T0, now=now, rand=lambda: 1.0
    )
    assert decision.kind == "retry"
    assert decision.retry_at == now + timedelta(seconds=120)


def test_retry_after_is_honoured() -> None:
    decision = first_retry(retry_after_seconds=600, rand=lambda: 1.0)
    assert decision.retry_at == T0 + timedelta(seconds=600)
    assert parse_retry_after("120", T0) == 120
    assert parse_retry_after("Sun, 01 Mar 2026 12:10:00 GMT", T0) == 600
    assert parse_retry_after("soon", T0) is None


def test_retries_end_after_a_day_and_the_last_lands_on_the_deadline() -> None:
    deadline = T0 + timedelta(days=1)
    late = deadline - timedelta(minutes=1)
    decision = decide(
        POLICY, outcome="retryable", attempts=20, first_attempt_at=T0, now=late, rand=lambda: 1.0
    )
    assert decision.retry_at == deadline
    assert (
        decide(POLICY, outcome="retryable", attempts=21, first_attempt_at=T0, now=deadline).kind
        == "give_up"
    )


def test_a_refusal_is_given_up_at_once() -> None:
    decision = decide(POLICY, outcome="refused", attempts=1, first_attempt_at=T0, now=T0)
    assert decision.kind == "give_up"
    assert decide(POLICY, outcome="delivered", attempts=1, first_attempt_at=T0, now=T0).kind == (
        "delivered"
    )


def test_an_endpoint_failing_for_a_day_is_disabled() -> None:
    assert not should_disable(None, T0, 86400)
    assert not should_disable(T0, T0 + timedelta(hours=23), 86400)
    assert should_disable(T0, T0 + timedelta(hours=24), 86400)


@dataclass(frozen=True)
class D:
    endpoint_id: uuid.UUID
    n: int


def test_choose_keeps_each_endpoint_within_its_slots() -> None:
    slow, fast = uuid.uuid4(), uuid.uuid4()
    due = [D(slow, i) for i in range(10)] + [D(fast, i) for i in range(3)]
    chosen = choose(due, {slow: 4}, per_endpoint=5, free=100)
    assert [d.endpoint_id for d in chosen].count(slow) == 1
    assert [d.endpoint_id for d in chosen].count(fast) == 3
    assert len(choose(due, {}, per_endpoint=5, free=2)) == 2


def test_a_huge_retry_after_waits_until_the_deadline_at_most() -> None:
    decision = first_retry(retry_after_seconds=parse_retry_after("9" * 30, T0))
    assert decision.retry_at == T0 + timedelta(days=1)


def test_a_replays_tally_completes_a_batch_once_at_its_last_calls_end() -> None:
    def ended() -> Translation:
        return Translation(StreamState(), call_ended_in_batch=BATCH)

    tallies: dict[str, BatchTally] = {}
    assert tally(tallies, Translation(StreamState(), batch_total=(BATCH, 2))) is None
    assert tally(tallies, ended()) is None
    assert tally(tallies, ended()) == BATCH  # the second of two: completed now
    assert tally(tallies, ended()) is None  # a retry's end later: completed already
    assert tally(tallies, Translation(StreamState())) is None  # nothing of a batch
    assert tallies[BATCH] == BatchTally(total=2, ended=3)
