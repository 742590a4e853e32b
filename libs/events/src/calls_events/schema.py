"""JSON Schema export, so services in any language can produce and consume our events.

python -m calls_events.schema docs/events
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from . import Envelope, event_types


def schemas() -> dict[str, dict[str, Any]]:
    """One JSON Schema per event type (its `data`), plus the envelope's."""
    out: dict[str, dict[str, Any]] = {"Envelope": Envelope.model_json_schema()}
    for name, cls in sorted(event_types().items()):
        schema = cls.model_json_schema()
        schema["x-event-type"] = name
        schema["x-event-version"] = cls.VERSION
        out[name] = schema
    return out


def main(argv: list[str] | None = None) -> None:
    target = Path((argv or sys.argv[1:] or ["docs/events"])[0])
    target.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas().items():
        (target / f"{name}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")


if __name__ == "__main__":
    main()
