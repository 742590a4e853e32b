"""Unit tests for the pure scenario table."""

from __future__ import annotations

import pytest
from carrier_sim.scenarios import (
    Answerer,
    Outcome,
    Rejection,
    Scenario,
    answered_by,
    is_valid_destination,
    scenario_for,
)


def _scenario(to: str) -> Scenario:
    result = scenario_for(to, talk_seconds=2.0, long_talk_seconds=60.0)
    assert isinstance(result, Scenario)
    return result


def test_invalid_number_is_rejected_with_21211() -> None:
    result = scenario_for("+15005550001", talk_seconds=2.0)
    assert result == Rejection(
        400, 21211, "The 'To' number +15005550001 is not a valid phone number."
    )


def test_unreachable_number_is_rejected_with_21214() -> None:
    result = scenario_for("+15005550002", talk_seconds=2.0)
    assert isinstance(result, Rejection)
    assert (result.status, result.code) == (400, 21214)
    assert result.message == "'To' phone number cannot be reached"


@pytest.mark.parametrize("to", ["12345", "+0123456789", "not a number", "+1 415 555 1212", ""])
def test_malformed_numbers_are_invalid(to: str) -> None:
    result = scenario_for(to, talk_seconds=2.0)
    assert isinstance(result, Rejection)
    assert result.code == 21211


@pytest.mark.parametrize(
    ("to", "outcome", "answerer", "rings"),
    [
        ("+15005550003", Outcome.BUSY, None, True),
        ("+15005550004", Outcome.NO_ANSWER, None, True),
        ("+15005550005", Outcome.COMPLETED, Answerer.MACHINE, True),
        ("+15005550006", Outcome.FAILED, None, False),
        ("+15005550007", Outcome.COMPLETED, Answerer.HUMAN, True),
        ("+14155551212", Outcome.COMPLETED, Answerer.HUMAN, True),
        ("sip:agent@example.com", Outcome.COMPLETED, Answerer.HUMAN, True),
    ],
)
def test_scenario_table(to: str, outcome: Outcome, answerer: Answerer | None, rings: bool) -> None:
    scenario = _scenario(to)
    assert scenario.outcome is outcome
    assert scenario.answerer is answerer
    assert scenario.answered is (answerer is not None)
    assert scenario.rings is rings


def test_talk_time() -> None:
    assert _scenario("+14155551212").talk_seconds == 2.0
    assert _scenario("+15005550005").talk_seconds == 2.0
    assert _scenario("+15005550007").talk_seconds == 60.0
    assert _scenario("+15005550003").talk_seconds == 0.0


@pytest.mark.parametrize("to", ["+15005550008", "+150055500081", "+1500555000899"])
def test_long_ring_numbers_ring_for_the_long_ring_time_then_no_answer(to: str) -> None:
    scenario = scenario_for(to, talk_seconds=2.0, long_ring_seconds=45.0)
    assert scenario == Scenario(Outcome.NO_ANSWER, None, 0.0, rings=True, ring_seconds=45.0)


def test_other_numbers_ring_for_the_configured_ring_time() -> None:
    assert _scenario("+14155551212").ring_seconds is None
    assert _scenario("+150055500081234").ring_seconds is None  # too many digits appended


def test_valid_destinations() -> None:
    assert is_valid_destination("+442071838750")
    assert is_valid_destination("client:alice")
    assert not is_valid_destination("4155551212")


@pytest.mark.parametrize(
    ("answerer", "detection", "expected"),
    [
        (Answerer.HUMAN, None, None),
        (Answerer.MACHINE, None, None),
        (Answerer.MACHINE, "", None),
        (Answerer.HUMAN, "Enable", "human"),
        (Answerer.MACHINE, "Enable", "machine_start"),
        (Answerer.HUMAN, "DetectMessageEnd", "human"),
        (Answerer.MACHINE, "DetectMessageEnd", "machine_end_beep"),
    ],
)
def test_answered_by(answerer: Answerer, detection: str | None, expected: str | None) -> None:
    assert answered_by(answerer, detection) == expected


@pytest.mark.parametrize("to", ["+15005550093", "+150055500931234"])
def test_a_busy_then_answer_number_is_busy_that_many_times_then_answers(to: str) -> None:
    fates = [scenario_for(to, talk_seconds=2.0, earlier_calls=n) for n in range(4)]
    assert [f.outcome for f in fates if isinstance(f, Scenario)] == [
        Outcome.BUSY,
        Outcome.BUSY,
        Outcome.BUSY,
        Outcome.COMPLETED,
    ]
