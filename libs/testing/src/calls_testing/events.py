"""Events put in the event store the way the gateway does, for tests of the services that
take them from there (the dialer, the recordings service, the call log)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from calls_events import (
    BatchCall,
    BatchRequested,
    CallRequested,
    Envelope,
    Event,
    call_stream,
    requested_call_envelopes,
)
from calls_platform import eventstore
from calls_platform.db import Pool

E = TypeVar("E", bound=Event)


def wrap_as_gateway(
    event: Event, organization_id: str, *, event_id: uuid.UUID | None = None
) -> Envelope:
    """`event` in its call's stream, as the gateway wraps it: the organization it belongs to
    and a correlation id derived from the call."""
    call_id: uuid.UUID = event.call_id  # type: ignore[attr-defined]  # every call event has one
    return Envelope.wrap(
        event,
        stream_id=call_stream(call_id),
        organization_id=organization_id,
        correlation_id=f"corr-{call_id}",
        event_id=event_id,
    )


async def append_as_gateway(
    pool: Pool, event: Event, organization_id: str, *, event_id: uuid.UUID | None = None
) -> Envelope:
    """Append `event` as the gateway does; return it as recorded (with its position), or as
    wrapped when the store already held that event id (an idempotent re-append)."""
    envelope = wrap_as_gateway(event, organization_id, event_id=event_id)
    async with pool.connection() as conn:
        recorded = await eventstore.append(conn, [envelope])
    return recorded[0] if recorded else envelope


async def read_call_events(
    pool: Pool, call_id: uuid.UUID, *, after: type[Event] | None = None
) -> list[Event]:
    """The events of the call's stream, in order, leaving out those of type `after` (the
    event the test appended itself)."""
    async with pool.connection() as conn:
        stream = await eventstore.read_stream(conn, call_stream(call_id))
    return [e.event() for e in stream if after is None or e.event_type != after.TYPE]


def event_of(envelope: Envelope, kind: type[E]) -> E:
    """The event `envelope` carries, which must be a `kind`."""
    event = envelope.event()
    assert isinstance(event, kind), f"{envelope.event_type}, not {kind.TYPE}"
    return event


def of_kind(events: list[Event], kind: type[E]) -> list[E]:
    """Those of `events` that are `kind`s, typed as such."""
    return [e for e in events if isinstance(e, kind)]


def wrap_batch(
    numbers: Sequence[str],
    organization_id: str,
    *,
    from_number: str,
    batch_id: str | None = None,
    occurred_at: datetime | None = None,
    call: dict[str, Any] | None = None,
    **fields: Any,
) -> Envelope:
    """A BatchRequested carrying a call to each of `numbers` (`call`: more of each call's
    fields, e.g. its schedule; `fields`: more of the batch's), wrapped as the gateway wraps
    it: on the batch's stream, with a correlation id derived from the batch."""
    batch_id = batch_id or f"batch-{uuid.uuid4().hex}"
    batch = BatchRequested(
        batch_id=batch_id,
        total=len(numbers),
        from_number=from_number,
        requested_by=fields.pop("requested_by", "test"),
        calls=tuple(
            BatchCall(call_id=uuid.uuid4(), to_number=number, **(call or {})) for number in numbers
        ),
        **fields,
    )
    return Envelope.wrap(
        batch,
        stream_id=batch_id,
        organization_id=organization_id,
        correlation_id=f"corr-{batch_id}",
        occurred_at=occurred_at,
    )


def requests_in(envelopes: Sequence[Envelope]) -> list[Envelope]:
    """Every call request `envelopes` hold, in order: each stored CallRequested, and the ones
    a BatchRequested carries, as the dialer appends them when it first handles each call."""
    requests: list[Envelope] = []
    for envelope in envelopes:
        if envelope.event_type == CallRequested.TYPE:
            requests.append(envelope)
        elif isinstance(batch := envelope.event(), BatchRequested):
            requests += requested_call_envelopes(envelope, batch)
    return requests
