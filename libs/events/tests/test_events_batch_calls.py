"""A BatchRequested carries its calls; `requested_calls` (models, for the call log) and
`requested_call_documents` (JSON, for the dialer, which appends them) make of each the
CallRequested the dialer appends on the call's stream, the same whoever asks."""

from __future__ import annotations

import uuid

from calls_events import (
    BatchRequested,
    CallingWindow,
    CallRequested,
    Envelope,
    RetryPolicy,
    Schedule,
    call_stream,
    requested_call_documents,
    requested_call_envelopes,
    requested_calls,
)

AGENT = uuid.uuid4()
SCHEDULE = Schedule(window=CallingWindow(start="09:00", end="20:00", time_zone="Asia/Tokyo"))


def stored_batch() -> Envelope:
    """A batch's request as the gateway stores it: its calls in their JSON form, empty parts
    left out."""
    calls = [
        {"call_id": str(uuid.uuid4()), "to_number": "+14155550001"},
        {
            "call_id": str(uuid.uuid4()),
            "to_number": "+14155550002",
            "variables": {"name": "Ada"},
            "metadata": {"crm": [1, 2]},
        },
        {
            "call_id": str(uuid.uuid4()),
            "to_number": "+81312345678",
            "schedule": SCHEDULE.model_dump(mode="json"),
        },
    ]
    batch = BatchRequested(
        batch_id="batch-1",
        total=3,
        from_number="+14155550100",
        agent_id=AGENT,
        agent_name="Ada",
        requested_by="tester",
        record=False,
        retry=RetryPolicy(max_attempts=2),
        max_concurrency=4,
    )
    envelope = Envelope.wrap(batch, stream_id="batch-1", organization_id="org_a")
    return envelope.model_copy(update={"data": {**envelope.data, "calls": calls}})


def test_each_call_is_the_request_a_validated_event_would_be() -> None:
    envelope = stored_batch()
    batch = envelope.event()
    assert isinstance(batch, BatchRequested)
    calls = requested_calls(batch)
    carried = envelope.data["calls"]
    for index, (call, given) in enumerate(zip(calls, carried, strict=True)):
        validated = CallRequested(
            call_id=uuid.UUID(given["call_id"]),
            to_number=given["to_number"],
            from_number="+14155550100",
            agent_id=AGENT,
            agent_name="Ada",
            batch_id="batch-1",
            batch_index=index,
            record=False,
            requested_by="tester",
            variables=given.get("variables", {}),
            metadata=given.get("metadata", {}),
            schedule=given.get("schedule"),
            retry=RetryPolicy(max_attempts=2),
            max_concurrency=4,
        )
        assert call == validated
        assert call.model_dump(mode="json") == validated.model_dump(mode="json")
    assert calls[2].schedule == SCHEDULE


def test_a_calls_envelope_is_the_same_whoever_makes_it() -> None:
    envelope = stored_batch()
    batch = envelope.event()
    assert isinstance(batch, BatchRequested)
    first = requested_call_envelopes(envelope, batch)
    assert first == requested_call_envelopes(envelope, batch)
    assert len({e.event_id for e in first}) == 3
    # the JSON form the dialer keeps is exactly the envelope's
    for document, made in zip(requested_call_documents(envelope, batch), first, strict=True):
        assert document == made.model_dump(mode="json")
    for made, call in zip(first, requested_calls(batch), strict=True):
        assert made.stream_id == call_stream(call.call_id)
        assert (made.organization_id, made.correlation_id) == ("org_a", envelope.correlation_id)
        assert made.occurred_at == envelope.occurred_at
        assert made.causation_id == str(envelope.event_id)
        # its data is the request the call log folds, and validates as a CallRequested
        assert made.data == call.model_dump(mode="json")
        assert made.event() == call
        assert Envelope.model_validate_json(made.model_dump_json()) == made


def test_another_batch_gives_other_event_ids() -> None:
    one, other = stored_batch(), stored_batch()
    ids = {
        made.event_id
        for e in (one, other)
        for made in requested_call_envelopes(e, e.event())  # type: ignore[arg-type]
    }
    assert len(ids) == 6


def test_a_batch_stored_before_it_carried_calls_stands_for_none() -> None:
    """Older batches' CallRequested events followed them in the same commit."""
    old = {
        "batch_id": "batch-2",
        "total": 2,
        "from_number": "+14155550100",
        "agent_id": None,
        "duplicates_dropped": 0,
        "requested_by": "tester",
    }
    envelope = Envelope(
        event_type="BatchRequested",
        event_version=1,
        stream_id="batch-2",
        organization_id="org_a",
        data=old,
    )
    batch = envelope.event()
    assert isinstance(batch, BatchRequested)
    assert requested_calls(batch) == []
