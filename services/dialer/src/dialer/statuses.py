"""The carrier's call statuses and their order (pure).

A call only moves forward at the carrier: queued → initiated → ringing → in-progress → one of
the terminal statuses. Reports can arrive late, twice or out of order (callbacks, answers to
our own questions), so what the dialer remembers of a call never moves backwards.
"""

from __future__ import annotations

from typing import Final, get_args

from calls_events import CarrierStatus

KNOWN: Final = frozenset(get_args(CarrierStatus))
TERMINAL: Final = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
PROGRESS: Final = ("queued", "initiated", "ringing", "in-progress")


def rank(status: str) -> int:
    """Position in the order above; every terminal (or unknown) status ranks last."""
    return PROGRESS.index(status) if status in PROGRESS else len(PROGRESS)


def advances(known: str | None, reported: str) -> bool:
    """Whether `reported` is news after `known`: nothing known yet, or a later status. A
    terminal status is final; the same status again is not news."""
    if known is None:
        return True
    if known in TERMINAL:
        return False
    return rank(reported) > rank(known)
