"""A batch's CallRequested events are built in bulk (no per-event validation): each must be
exactly the event Envelope.wrap would have made of it."""

from __future__ import annotations

import uuid
from typing import Any

from calls_events import CallingWindow, CallRequested, Envelope, Schedule, call_stream
from gateway.calls import requested_calls


def test_bulk_built_requests_are_the_events_wrap_would_build() -> None:
    agent_id = uuid.uuid4()
    template = CallRequested(
        call_id=uuid.uuid4(),
        to_number="+14155550000",
        from_number="+14155550100",
        agent_id=agent_id,
        agent_name="Ada",
        batch_id="batch-1",
        batch_index=0,
        record=False,
        requested_by="tester",
    )
    schedule = Schedule(window=CallingWindow(start="09:00", end="20:00", time_zone="recipient"))
    calls: list[dict[str, Any]] = [
        {"to_number": "+14155550001"},
        {"to_number": "+14155550002", "variables": {"name": "Ada"}, "metadata": {"crm": [1, 2]}},
        {"to_number": "+442071838750", "schedule": schedule.model_dump(mode="json")},
    ]

    rows = requested_calls(template, calls, organization_id="org_a", correlation_id="corr")
    # each row, in the form the store keeps, is a valid envelope
    built = [Envelope.model_validate(row) for row in rows]

    assert len({e.event_id for e in built}) == len({e.stream_id for e in built}) == 3
    assert all(
        e.event_id.version == 4 and str(e.event_id) == row["event_id"]
        for e, row in zip(built, rows, strict=True)
    )
    expected: list[dict[str, Any]] = [
        {"to_number": "+14155550001"},
        {"to_number": "+14155550002", "variables": {"name": "Ada"}, "metadata": {"crm": [1, 2]}},
        {"to_number": "+442071838750", "schedule": schedule},
    ]
    for index, (envelope, fields) in enumerate(zip(built, expected, strict=True)):
        event = envelope.event()  # validates the data as a CallRequested
        assert isinstance(event, CallRequested)
        assert event == template.model_copy(
            update={"call_id": event.call_id, "batch_index": index, **fields}
        )
        assert envelope.stream_id == call_stream(event.call_id)
        wrapped = Envelope.wrap(
            event,
            stream_id=envelope.stream_id,
            organization_id="org_a",
            correlation_id="corr",
            event_id=envelope.event_id,
            occurred_at=envelope.occurred_at,
        )
        assert envelope == wrapped
        assert Envelope.model_validate_json(envelope.model_dump_json()) == envelope
