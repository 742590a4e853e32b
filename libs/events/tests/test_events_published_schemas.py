"""The JSON Schemas published in docs/events are the ones libs/events defines today."""

from __future__ import annotations

import json
from pathlib import Path

from calls_events.schema import schemas

PUBLISHED = Path(__file__).resolve().parents[3] / "docs" / "events"


def test_docs_events_match_the_event_definitions() -> None:
    expected = {f"{name}.schema.json": schema for name, schema in schemas().items()}
    published = {p.name: json.loads(p.read_text()) for p in PUBLISHED.glob("*.schema.json")}
    stale = sorted(n for n in expected.keys() & published.keys() if expected[n] != published[n])
    assert sorted(expected.keys() - published.keys()) == [], "run `make event-schemas`"
    assert sorted(published.keys() - expected.keys()) == [], "remove schemas of deleted events"
    assert stale == [], "run `make event-schemas`"
