"""Which placed calls are canceled at the carrier, and the order of carrier statuses (pure)."""

from __future__ import annotations

import pytest
from dialer.carrier_cancel import Cancel, Leave, decide
from dialer.statuses import advances

LIMIT = 600.0


@pytest.mark.parametrize("status", ["queued", "initiated", "ringing"])
def test_a_canceled_batchs_unanswered_call_is_canceled_however_young(status: str) -> None:
    decision = decide(
        status, batch_canceled=True, seconds_since_placed=0.0, queue_limit_seconds=LIMIT
    )
    assert decision == Cancel("batch_canceled")


def test_a_conversation_in_progress_is_left_alone_even_if_its_batch_was_canceled() -> None:
    decision = decide(
        "in-progress", batch_canceled=True, seconds_since_placed=9e9, queue_limit_seconds=LIMIT
    )
    assert isinstance(decision, Leave)
    assert "in progress" in decision.why


@pytest.mark.parametrize("status", ["completed", "busy", "failed", "no-answer", "canceled"])
def test_an_ended_call_is_left_alone(status: str) -> None:
    for batch_canceled in (False, True):
        decision = decide(
            status,
            batch_canceled=batch_canceled,
            seconds_since_placed=9e9,
            queue_limit_seconds=LIMIT,
        )
        assert decision == Leave("the call has ended")


def test_a_call_queued_at_the_carrier_beyond_the_limit_is_canceled() -> None:
    assert decide(
        "queued", batch_canceled=False, seconds_since_placed=LIMIT, queue_limit_seconds=LIMIT
    ) == Cancel("queued_too_long")


def test_a_call_queued_for_less_than_the_limit_is_left_to_ring() -> None:
    decision = decide(
        "queued", batch_canceled=False, seconds_since_placed=LIMIT - 1, queue_limit_seconds=LIMIT
    )
    assert isinstance(decision, Leave)


@pytest.mark.parametrize("status", ["initiated", "ringing"])
def test_only_queued_calls_count_against_the_queue_limit(status: str) -> None:
    decision = decide(
        status, batch_canceled=False, seconds_since_placed=9e9, queue_limit_seconds=LIMIT
    )
    assert isinstance(decision, Leave)


def test_an_unknown_carrier_status_is_never_acted_on() -> None:
    decision = decide(
        "paused", batch_canceled=True, seconds_since_placed=9e9, queue_limit_seconds=LIMIT
    )
    assert isinstance(decision, Leave)
    assert "paused" in decision.why


def test_carrier_statuses_only_move_forward() -> None:
    assert advances(None, "queued")
    assert advances("queued", "ringing")
    assert advances("ringing", "in-progress")
    assert advances("in-progress", "completed")
    assert advances("ringing", "canceled")
    assert not advances("ringing", "ringing")  # the same again is not news
    assert not advances("in-progress", "ringing")  # a late callback
    assert not advances("completed", "canceled")  # a terminal status is final
    assert not advances("canceled", "in-progress")
