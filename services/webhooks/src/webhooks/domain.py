"""The webhooks service's rules, pure (no I/O, the clock passed in): which stored events become
which webhook messages, when a failed delivery is tried again or given up, when an endpoint
that keeps failing is disabled, and which due deliveries may be sent now."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Final, Literal, Protocol, TypeVar

from calls_events import (
    TERMINAL_CARRIER_STATUSES,
    BatchCancelRequested,
    BatchRequested,
    CallCanceled,
    CallExpired,
    CallFailed,
    CallInitiated,
    CallRequested,
    CallSkipped,
    CallStatusReported,
    ConversationReported,
    Envelope,
    InboundCallReceived,
    RecordingStored,
)

# The webhook types a call gets at most once (the carrier may report the same thing twice, by
# callback and by reconciliation, under different event ids).
_ONCE: Final = frozenset(
    {"call.queued", "call.initiated", "call.answered", "call.ended", "call.failed"}
)
_ENDS_CALL: Final = frozenset({"call.ended", "call.failed"})
_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "calls-backend:webhooks")


def message_id(*parts: str) -> str:
    """The webhook-id of a message: derived from what it reports, so the same event makes the
    same message (for every endpoint, every attempt, a redelivery and a replay)."""
    return "msg_" + uuid.uuid5(_NAMESPACE, ":".join(parts)).hex


@dataclass(frozen=True)
class Message:
    """One webhook message to deliver to every endpoint subscribed to its type."""

    id: str
    type: str
    # deliveries of one sequence (a call's or a batch's stream) go out in `position` order
    sequence_key: str
    position: int
    created_at: datetime
    organization_id: str
    call_id: uuid.UUID | None = None
    batch_id: str | None = None


@dataclass(frozen=True)
class StreamState:
    """What the service remembers of one stream: the next stream version it expects (events
    are taken strictly in stream order), the call's batch, and the types already sent."""

    next_version: int = 1
    batch_id: str | None = None
    sent: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Translation:
    state: StreamState
    messages: tuple[Message, ...] = ()
    # the call of this batch has ended (count it towards the batch's completion)
    call_ended_in_batch: str | None = None
    # a batch was accepted with this many calls
    batch_total: tuple[str, int] | None = None


def _call_types(envelope: Envelope) -> tuple[str, uuid.UUID | None]:
    """The webhook type an event of a call's stream stands for ('' for none), and its call."""
    event = envelope.event()
    if isinstance(event, CallRequested):
        return "call.queued", event.call_id
    if isinstance(event, (CallInitiated, InboundCallReceived)):
        return "call.initiated", event.call_id
    if isinstance(event, CallStatusReported):
        if event.carrier_status == "in-progress":
            return "call.answered", event.call_id
        if event.carrier_status in TERMINAL_CARRIER_STATUSES:
            return "call.ended", event.call_id
        return "", event.call_id
    if isinstance(event, CallCanceled):
        return "call.ended", event.call_id
    if isinstance(event, CallFailed | CallSkipped | CallExpired):
        # never placed: refused, or not dialed (on the do-not-call list, past its end_at)
        return "call.failed", event.call_id
    if isinstance(event, RecordingStored):
        return "recording.ready", event.call_id
    if isinstance(event, ConversationReported):
        return "transcript.ready", event.call_id
    return "", None


def translate(state: StreamState, envelope: Envelope) -> Translation:
    """Fold one stored event (the next of its stream) into the stream's state and say which
    webhook messages it makes."""
    assert envelope.position is not None
    state = replace(state, next_version=state.next_version + 1)
    if envelope.stream_id.startswith("batch-"):
        return _translate_batch(state, envelope)
    event_type, call_id = _call_types(envelope)
    batch_id = state.batch_id
    event = envelope.event()
    if isinstance(event, CallRequested) and event.batch_id is not None:
        batch_id = event.batch_id
        state = replace(state, batch_id=batch_id)
    if not event_type:
        return Translation(state)
    if event_type in _ONCE:
        if event_type in state.sent or (event_type in _ENDS_CALL and state.sent & _ENDS_CALL):
            return Translation(state)
        state = replace(state, sent=state.sent | {event_type})
    message = Message(
        id=message_id(str(envelope.event_id), event_type),
        type=event_type,
        sequence_key=envelope.stream_id,
        position=envelope.position,
        created_at=envelope.occurred_at,
        organization_id=envelope.organization_id,
        call_id=call_id,
        batch_id=batch_id,
    )
    ended_in_batch = batch_id if event_type in _ENDS_CALL else None
    return Translation(state, (message,), call_ended_in_batch=ended_in_batch)


def _translate_batch(state: StreamState, envelope: Envelope) -> Translation:
    event = envelope.event()
    assert envelope.position is not None
    if isinstance(event, BatchRequested):
        return Translation(state, batch_total=(event.batch_id, event.total))
    if isinstance(event, BatchCancelRequested):
        if "batch.canceled" in state.sent:
            return Translation(state)
        message = Message(
            id=message_id(str(envelope.event_id), "batch.canceled"),
            type="batch.canceled",
            sequence_key=envelope.stream_id,
            position=envelope.position,
            created_at=envelope.occurred_at,
            organization_id=envelope.organization_id,
            batch_id=event.batch_id,
        )
        return Translation(replace(state, sent=state.sent | {"batch.canceled"}), (message,))
    return Translation(state)


def batch_completed(batch_id: str, organization_id: str, *, position: int, at: datetime) -> Message:
    """The message saying every call of a batch has ended; ordered in the batch's sequence
    after what the batch already sent, by the position of the event that ended its last call."""
    return Message(
        id=message_id("batch.completed", batch_id),
        type="batch.completed",
        sequence_key=batch_id,  # a batch's stream id is its batch id
        position=position,
        created_at=at,
        organization_id=organization_id,
        batch_id=batch_id,
    )


def is_batch_complete(total: int | None, ended: int) -> bool:
    """A batch is complete once as many of its calls ended as it had (its total known)."""
    return total is not None and ended >= total


@dataclass(frozen=True)
class BatchTally:
    """A batch's progress as a replay folds the store (the intake keeps it in
    webhooks.batches): its total once its BatchRequested is seen, its calls ended, and
    whether it has completed."""

    total: int | None = None
    ended: int = 0

    @property
    def completed(self) -> bool:
        return is_batch_complete(self.total, self.ended)


def tally(translations: dict[str, BatchTally], translation: Translation) -> str | None:
    """Count what `translation` tells of a batch into `translations` (by batch id); the batch
    id when this is what completes it (its batch.completed is made then, once)."""
    if translation.batch_total is not None:
        batch_id, total = translation.batch_total
        before = translations.get(batch_id, BatchTally())
        after = replace(before, total=total)
    elif translation.call_ended_in_batch is not None:
        batch_id = translation.call_ended_in_batch
        before = translations.get(batch_id, BatchTally())
        after = replace(before, ended=before.ended + 1)
    else:
        return None
    translations[batch_id] = after
    return batch_id if after.completed and not before.completed else None


# --- retrying ---------------------------------------------------------------------------

Outcome = Literal["delivered", "retryable", "refused"]


def classify(status: int | None) -> Outcome:
    """What a response (None: a timeout or connection error, no response) means for the
    delivery: 2xx delivered; timeouts, connection errors, 408, 429 and 5xx are tried again;
    anything else (other 4xx, and 3xx: redirects are not followed) is refused for good."""
    if status is None:
        return "retryable"
    if 200 <= status < 300:
        return "delivered"
    if status in (408, 429) or status >= 500:
        return "retryable"
    return "refused"


@dataclass(frozen=True)
class RetryPolicy:
    # first retry after about base_seconds, doubling each attempt up to max_seconds
    base_seconds: float = 5.0
    max_seconds: float = 3600.0
    # a delivery still failing this long after its first attempt is given up
    give_up_after_seconds: float = 24 * 3600.0
    # the share of each delay that is random (spreads retries of many deliveries apart)
    jitter: float = 0.5


@dataclass(frozen=True)
class Decision:
    kind: Literal["delivered", "retry", "give_up"]
    retry_at: datetime | None = None
    reason: str = ""


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a `Retry-After` header asks us to wait (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def backoff_seconds(policy: RetryPolicy, attempts: int, rand: Callable[[], float]) -> float:
    """The wait after the `attempts`-th failed attempt: exponential, capped, with jitter."""
    delay = min(policy.max_seconds, policy.base_seconds * 2 ** max(0, attempts - 1))
    return float(delay * (1 - policy.jitter) + delay * policy.jitter * rand())


def decide(
    policy: RetryPolicy,
    *,
    outcome: Outcome,
    attempts: int,
    first_attempt_at: datetime,
    now: datetime,
    retry_after_seconds: float | None = None,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """After attempt number `attempts` (1-based) ended with `outcome`: done, when to try
    again, or give up. A retry never lands past the give-up deadline: the last one is made at
    the deadline, so a receiver back within 24 hours still gets the message."""
    if outcome == "delivered":
        return Decision("delivered")
    if outcome == "refused":
        return Decision("give_up", reason="refused by the receiver (not retried)")
    deadline = first_attempt_at + timedelta(seconds=policy.give_up_after_seconds)
    if now >= deadline:
        return Decision("give_up", reason="still failing after the retry period")
    wait = backoff_seconds(policy, attempts, rand)
    if retry_after_seconds is not None:
        wait = max(wait * (1 - policy.jitter), retry_after_seconds)
    remaining = (deadline - now).total_seconds()
    return Decision("retry", retry_at=now + timedelta(seconds=min(wait, remaining)))


def should_disable(failing_since: datetime | None, now: datetime, after_seconds: float) -> bool:
    """An endpoint whose every attempt has failed for `after_seconds` is disabled."""
    return failing_since is not None and (now - failing_since).total_seconds() >= after_seconds


# --- choosing what to send ----------------------------------------------------------------


class Due(Protocol):
    @property
    def endpoint_id(self) -> uuid.UUID: ...


D = TypeVar("D", bound=Due)


def choose(
    due: Sequence[D],
    in_flight: Mapping[uuid.UUID, int],
    *,
    per_endpoint: int,
    free: int,
) -> list[D]:
    """From the due deliveries (heads of their sequences, oldest first), those to send now:
    at most `per_endpoint` in flight per endpoint, so a slow receiver uses only its own slots
    and never holds up another endpoint's deliveries, and at most `free` in all."""
    taken: dict[uuid.UUID, int] = dict(in_flight)
    chosen: list[D] = []
    for delivery in due:
        if len(chosen) >= free:
            break
        used = taken.get(delivery.endpoint_id, 0)
        if used >= per_endpoint:
            continue
        taken[delivery.endpoint_id] = used + 1
        chosen.append(delivery)
    return chosen
