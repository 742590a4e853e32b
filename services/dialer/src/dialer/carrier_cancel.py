"""Whether to cancel a placed call at the carrier (pure).

Two kinds of call are canceled at the carrier, with `update(status="canceled")`:

- a call of a canceled batch that is placed but not answered (queued, initiated or ringing):
  the batch's owner asked to stop, and nobody is on the line yet;
- a call the carrier has kept `queued` longer than the limit (Twilio queues calls created
  faster than the account's rate and keeps them up to 24 h): a voice agent calling hours late
  is worse than not calling.

A call in progress is never ended this way: a conversation under way is left alone, even if
its batch was canceled (ending it would take `status="completed"`, a hang-up). Twilio itself
cancels only queued and ringing calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from calls_events import CarrierStatus

from .statuses import IN_PROGRESS, PROGRESS, TERMINAL

# placed and not answered: every status before in-progress
NOT_ANSWERED: Final[frozenset[CarrierStatus]] = frozenset(PROGRESS) - {IN_PROGRESS}

Reason = Literal["batch_canceled", "queued_too_long"]


@dataclass(frozen=True)
class Cancel:
    reason: Reason


@dataclass(frozen=True)
class Leave:
    why: str


Decision = Cancel | Leave


def decide(
    carrier_status: str,
    *,
    batch_canceled: bool,
    seconds_since_placed: float,
    queue_limit_seconds: float,
) -> Decision:
    """`carrier_status`: what the carrier says of the call now (just fetched)."""
    if carrier_status in TERMINAL:
        return Leave("the call has ended")
    if carrier_status == IN_PROGRESS:
        return Leave("the call is in progress: a conversation is never cut off")
    if carrier_status not in NOT_ANSWERED:
        return Leave(f"unknown carrier status {carrier_status!r}")
    if batch_canceled:
        return Cancel("batch_canceled")
    if carrier_status == "queued" and seconds_since_placed >= queue_limit_seconds:
        return Cancel("queued_too_long")
    return Leave("not queued at the carrier beyond the limit")
