"""Pure mapping from a dialled ``To`` number to what the simulated carrier does with the call.

No I/O and no clock: :func:`scenario_for` is a plain function of its arguments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

INVALID_NUMBER = "+15005550001"
UNREACHABLE_NUMBER = "+15005550002"
BUSY_NUMBER = "+15005550003"
NO_ANSWER_NUMBER = "+15005550004"
MACHINE_NUMBER = "+15005550005"
FAILED_NUMBER = "+15005550006"
LONG_CALL_NUMBER = "+15005550007"
# rings for `long_ring_seconds`, then no-answer; the number with up to three digits appended
# does the same, so one batch (which dials each number once) can hold several such calls
LONG_RING_NUMBER = "+15005550008"
# busy the first N times it is called (N the digit after the prefix), answered after that; up to
# four more digits make numbers of their own: +15005550093… is busy twice, then answers
BUSY_THEN_ANSWER_PREFIX = "+1500555009"

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_ADDRESS_PREFIXES = ("sip:", "client:")


class Outcome(StrEnum):
    """Terminal call status a scenario ends with when nobody hangs up early."""

    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"


class Answerer(StrEnum):
    """Who picks up an answered call."""

    HUMAN = "human"
    MACHINE = "machine"


@dataclass(frozen=True)
class Rejection:
    """The create request is refused with a Twilio error (HTTP ``status``, Twilio ``code``)."""

    status: int
    code: int
    message: str


@dataclass(frozen=True)
class Scenario:
    """How an accepted call plays out."""

    outcome: Outcome
    answerer: Answerer | None
    talk_seconds: float
    rings: bool
    # how long it rings before it is answered or given up on; None: the configured default
    ring_seconds: float | None = None

    @property
    def answered(self) -> bool:
        return self.answerer is not None


SIP_RESPONSE_CODES: dict[str, int] = {
    "completed": 200,
    "busy": 486,
    "no-answer": 480,
    "canceled": 487,
    "failed": 500,
}


def is_valid_destination(to: str) -> bool:
    """E.164 numbers and ``sip:``/``client:`` addresses are dialable."""
    return bool(_E164.match(to)) or to.startswith(_ADDRESS_PREFIXES)


def is_long_ring(to: str) -> bool:
    return to.startswith(LONG_RING_NUMBER) and len(to) <= len(LONG_RING_NUMBER) + 3


def busy_times(to: str) -> int | None:
    """How many times a busy-then-answer number is busy before it answers (None: not one)."""
    rest = to.removeprefix(BUSY_THEN_ANSWER_PREFIX)
    if rest == to or not rest.isdigit() or not 1 <= len(rest) <= 5:
        return None
    return int(rest[0])


def scenario_for(
    to: str,
    *,
    talk_seconds: float,
    long_talk_seconds: float = 60.0,
    long_ring_seconds: float = 60.0,
    earlier_calls: int = 0,
) -> Scenario | Rejection:
    """Return the scenario for a ``To`` value, or the rejection the create request gets.
    ``earlier_calls``: how many calls to that number were created before this one."""
    if to == INVALID_NUMBER or not is_valid_destination(to):
        return Rejection(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    if to == UNREACHABLE_NUMBER:
        return Rejection(400, 21214, "'To' phone number cannot be reached")
    if to == BUSY_NUMBER:
        return Scenario(Outcome.BUSY, None, 0.0, rings=True)
    if to == NO_ANSWER_NUMBER:
        return Scenario(Outcome.NO_ANSWER, None, 0.0, rings=True)
    if to == FAILED_NUMBER:
        return Scenario(Outcome.FAILED, None, 0.0, rings=False)
    if to == MACHINE_NUMBER:
        return Scenario(Outcome.COMPLETED, Answerer.MACHINE, talk_seconds, rings=True)
    if to == LONG_CALL_NUMBER:
        return Scenario(Outcome.COMPLETED, Answerer.HUMAN, long_talk_seconds, rings=True)
    busy = busy_times(to)
    if busy is not None and earlier_calls < busy:
        return Scenario(Outcome.BUSY, None, 0.0, rings=True)
    if is_long_ring(to):
        return Scenario(Outcome.NO_ANSWER, None, 0.0, rings=True, ring_seconds=long_ring_seconds)
    return Scenario(Outcome.COMPLETED, Answerer.HUMAN, talk_seconds, rings=True)


def answered_by(answerer: Answerer, machine_detection: str | None) -> str | None:
    """The ``AnsweredBy`` value Twilio reports, or ``None`` when AMD was not requested.

    ``Enable`` reports a machine as soon as it is detected (``machine_start``);
    ``DetectMessageEnd`` waits for the greeting to end (``machine_end_beep``).
    """
    if not machine_detection:
        return None
    if answerer is Answerer.HUMAN:
        return "human"
    if machine_detection.lower() == "detectmessageend":
        return "machine_end_beep"
    return "machine_start"
