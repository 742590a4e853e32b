"""What to do about a dial attempt whose outcome is unknown (pure)."""

from __future__ import annotations

from dialer.reconcile import Adopt, DialAgain, GiveUp, WaitAndLook, decide

SAFE_DELAY = 30.0


def test_adopts_the_oldest_candidate_as_soon_as_the_carrier_shows_one() -> None:
    decision = decide(
        ["CAoldest", "CAnewer"],
        seconds_since_attempt=1.0,
        safe_delay_seconds=SAFE_DELAY,
        already_redialed=False,
    )
    assert decision == Adopt("CAoldest")


def test_adopts_a_candidate_even_after_a_redial_and_the_safe_delay() -> None:
    decision = decide(
        ["CAlate"],
        seconds_since_attempt=120.0,
        safe_delay_seconds=SAFE_DELAY,
        already_redialed=True,
    )
    assert decision == Adopt("CAlate")


def test_waits_and_looks_again_while_the_safe_delay_has_not_passed() -> None:
    for redialed in (False, True):
        decision = decide(
            [],
            seconds_since_attempt=SAFE_DELAY - 0.01,
            safe_delay_seconds=SAFE_DELAY,
            already_redialed=redialed,
        )
        assert decision == WaitAndLook()


def test_dials_again_once_the_safe_delay_has_passed_with_no_trace_of_the_call() -> None:
    decision = decide(
        [], seconds_since_attempt=SAFE_DELAY, safe_delay_seconds=SAFE_DELAY, already_redialed=False
    )
    assert decision == DialAgain()


def test_gives_up_when_a_redialed_attempt_also_left_no_trace() -> None:
    decision = decide(
        [],
        seconds_since_attempt=SAFE_DELAY + 1,
        safe_delay_seconds=SAFE_DELAY,
        already_redialed=True,
    )
    assert isinstance(decision, GiveUp)
    assert "second attempt" in decision.reason
