"""Events of a batch campaign, and the calls a batch's request stands for."""

from __future__ import annotations

import uuid
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from ._base import Envelope, Event
from .calls import E164, CallRequested, call_stream
from .schedules import RetryPolicy, Schedule


class BatchCall(BaseModel):
    """One call of a batch, as its BatchRequested carries it: what differs from call to call
    (the rest is the batch's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    call_id: uuid.UUID
    to_number: str = Field(pattern=E164)
    variables: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    schedule: Schedule | None = None


class BatchRequested(Event):
    """A batch was accepted.

    Its calls travel in it (`calls`, in the batch's order): each stands for the CallRequested
    that `requested_calls` makes of it, which the dialer appends on the call's own stream when
    it first handles the call (claims it, puts it off, ends it), so the store grows by one
    event per call as calls are dialed, not by 10,000 at once. A batch stored before `calls`
    existed has none: its CallRequested events follow in the same commit.
    """

    TYPE = "BatchRequested"

    batch_id: str
    total: int = Field(ge=1)
    from_number: str = Field(pattern=E164)
    agent_id: uuid.UUID | None = None
    duplicates_dropped: int = Field(default=0, ge=0)
    requested_by: str
    calls: tuple[BatchCall, ...] = ()
    # what every call of the batch shares (with from_number, agent_id and requested_by)
    agent_name: str | None = None
    record: bool = True
    retry: RetryPolicy | None = None
    max_concurrency: int | None = Field(default=None, ge=1)


# what every call of a batch shares with it, by CallRequested field (the rest: the call's own,
# its place in the batch, and a first attempt's defaults)
_SHARED: Final = (
    "from_number",
    "agent_id",
    "agent_name",
    "batch_id",
    "record",
    "requested_by",
    "retry",
    "max_concurrency",
)
_FIRST_ATTEMPT: Final[dict[str, Any]] = {
    "attempt": 1,
    "previous_call_id": None,
    "first_call_id": None,
}


def requested_calls(batch: BatchRequested) -> list[CallRequested]:
    """The CallRequested of each call `batch` carries (batch_index: its place in the batch),
    built from parts already validated (no per-call validation)."""
    shared = {field: getattr(batch, field) for field in _SHARED}
    return [
        CallRequested.model_construct(
            call_id=call.call_id,
            to_number=call.to_number,
            batch_index=index,
            variables=call.variables,
            metadata=call.metadata,
            schedule=call.schedule,
            **shared,
            **_FIRST_ATTEMPT,
        )
        for index, call in enumerate(batch.calls)
    ]


def requested_call_documents(envelope: Envelope, batch: BatchRequested) -> list[dict[str, Any]]:
    """The envelope of each batch call's CallRequested in its JSON form, as the dialer keeps it
    until it appends it, the same whoever makes it and however often: its data what
    `requested_calls` gives, its event id derived from the batch event's and the call's index,
    the batch's organization, time and correlation, caused by the batch's request (whoever
    appends it may give it its own time). Built from JSON, without a model per call."""
    dumped = batch.model_dump(mode="json")
    shared = {field: dumped[field] for field in _SHARED} | _FIRST_ATTEMPT
    occurred_at = envelope.model_dump(mode="json", include={"occurred_at"})["occurred_at"]
    return [
        {
            "event_id": str(uuid.uuid5(envelope.event_id, f"call-{index}")),
            "event_type": CallRequested.TYPE,
            "event_version": CallRequested.VERSION,
            "stream_id": call_stream(call["call_id"]),
            "organization_id": envelope.organization_id,
            "occurred_at": occurred_at,
            "correlation_id": envelope.correlation_id,
            "causation_id": str(envelope.event_id),
            "position": None,
            "stream_version": None,
            "data": {**shared, **call, "batch_index": index},
        }
        for index, call in enumerate(dumped["calls"])
    ]


def requested_call_envelopes(envelope: Envelope, batch: BatchRequested) -> list[Envelope]:
    """`requested_call_documents` as envelopes."""
    return [Envelope.model_validate(d) for d in requested_call_documents(envelope, batch)]


class BatchCancelRequested(Event):
    """A client asked to stop the calls of a batch that have not been dialed yet."""

    TYPE = "BatchCancelRequested"

    batch_id: str
    requested_by: str
