"""JSON Schema export of the events, for producers and consumers in other languages."""

from __future__ import annotations

import json
from pathlib import Path

from calls_events import E164, event_types
from calls_events.schema import main, schemas


def test_schemas_cover_every_registered_event_and_the_envelope() -> None:
    exported = schemas()

    assert set(exported) == {*event_types(), "Envelope"}
    for name, cls in event_types().items():
        assert exported[name]["x-event-type"] == name
        assert exported[name]["x-event-version"] == cls.VERSION
    assert "data" in exported["Envelope"]["properties"]


def test_event_schema_keeps_field_constraints() -> None:
    requested = schemas()["CallRequested"]

    assert requested["properties"]["to_number"]["pattern"] == E164
    assert "call_id" in requested["required"]
    assert requested["additionalProperties"] is False


def test_main_writes_one_schema_file_per_event_and_the_envelope(tmp_path: Path) -> None:
    target = tmp_path / "events"

    main([str(target)])

    written = {p.name: json.loads(p.read_text()) for p in target.iterdir()}
    assert set(written) == {f"{name}.schema.json" for name in schemas()}
    assert written["CallRequested.schema.json"] == schemas()["CallRequested"]
