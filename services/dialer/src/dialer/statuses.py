"""The carrier's call statuses and their order (pure).

A call only moves forward at the carrier: queued → initiated → ringing → in-progress → one of
the terminal statuses. Reports can arrive late, twice or out of order (callbacks, answers to
our own questions), so what the dialer remembers of a call never moves backwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from calls_events import (
    CARRIER_PROGRESS,
    CARRIER_STATUSES,
    TERMINAL_CARRIER_STATUSES,
    CarrierStatus,
)

KNOWN: Final = frozenset(CARRIER_STATUSES)
TERMINAL: Final = TERMINAL_CARRIER_STATUSES
PROGRESS: Final = CARRIER_PROGRESS
IN_PROGRESS: Final[CarrierStatus] = "in-progress"
"""Answered and under way: the last status before a terminal one."""


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


def sql_list(statuses: Iterable[str]) -> str:
    """`statuses` as an SQL list of literals, in the order above: for a predicate that must
    read as the one of a partial index (which a query parameter would not), e.g.
    `carrier_status NOT IN ('completed', …)`. Everywhere else, pass the set as a parameter."""
    chosen = set(statuses)
    unknown = chosen - KNOWN
    if unknown:
        raise ValueError(f"not carrier statuses: {sorted(unknown)}")
    return "(" + ", ".join(f"'{s}'" for s in CARRIER_STATUSES if s in chosen) + ")"
