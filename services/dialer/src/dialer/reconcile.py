"""What to do about a dial attempt whose outcome is unknown (pure).

An attempt is ambiguous when the dialer sent the create request but never learned the answer
(it crashed, timed out, or got a 5xx). The carrier may have created the call, so it must not
simply be dialed again: first look for it at the carrier.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Adopt:
    """The carrier has the call: this is its SID."""

    call_sid: str


@dataclass(frozen=True)
class WaitAndLook:
    """Not found yet, but the carrier's list may lag: look again later."""


@dataclass(frozen=True)
class DialAgain:
    """Not found after the safe delay, and not redialed before: dial once more."""


@dataclass(frozen=True)
class GiveUp:
    reason: str


Decision = Adopt | WaitAndLook | DialAgain | GiveUp


def decide(
    candidate_sids: list[str],
    *,
    seconds_since_attempt: float,
    safe_delay_seconds: float,
    already_redialed: bool,
) -> Decision:
    """`candidate_sids`: the carrier's calls matching the attempt's To/From since it started,
    oldest first, minus SIDs already belonging to other calls."""
    if candidate_sids:
        return Adopt(candidate_sids[0])
    if seconds_since_attempt < safe_delay_seconds:
        return WaitAndLook()
    if already_redialed:
        return GiveUp(
            "dial outcome unknown: the carrier has no record of the call after a second attempt"
        )
    return DialAgain()
