"""The Calls API reference (../shared/reference/calls-api-reference.txt) as data, and a checker.

Each schema below is one of the reference's example responses turned into a schema: the fields
it names, their JSON types (as the example writes them: `165.0` is a float), nullability (the
field tables' `| null`) and vocabularies (the values the tables list). Fields the reference does
not name are allowed only when docs/api.md documents them as extensions (`extensions`); a
value outside a vocabulary is allowed only when it is a documented extension of it.

`violations(schema, value)` answers every difference, each naming the field's path
(`items[0].duration: expected float, got int`).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from calls_events import OUTCOMES as OUR_OUTCOMES

# The reference's example conversation: its transcript and the usage of its first two providers
EXAMPLE_TRANSCRIPT: Final = (
    {"role": "user", "content": "Hi, I need help with my order."},
    {"role": "assistant", "content": "Of course! Could you share your order number?"},
)
EXAMPLE_USAGE: Final = {
    "deepgram": {"type": "stt", "model": "nova-2"},
    "openai": {"type": "llm", "model": "gpt-4o"},
}


@dataclass(frozen=True)
class Field:
    """One field: its JSON type (`string`, `uuid`, `datetime`, `float`, `integer`, `array`,
    `object`), whether null is allowed, its vocabulary, and what arrays and objects hold."""

    kind: str
    nullable: bool = False
    enum: frozenset[str] | None = None
    extended_enum: frozenset[str] = frozenset()  # documented extensions of the vocabulary
    pattern: str | None = None
    items: Field | Schema | None = None  # an array's elements
    values: Field | Schema | None = None  # an object's values (a map of names to these)
    required: bool = True


@dataclass(frozen=True)
class Schema:
    """An object with named fields."""

    fields: Mapping[str, Field]
    extensions: frozenset[str] = field(default_factory=frozenset)

    def extended(self, fields: Mapping[str, Field], extensions: frozenset[str]) -> Schema:
        return Schema({**self.fields, **fields}, self.extensions | extensions)


# JSON's types by the Python type json.loads gives them; bool before int (a bool is an int)
_JSON_TYPES: Final = (
    (type(None), "null"),
    (bool, "boolean"),
    (int, "int"),
    (float, "float"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def _json_type(value: Any) -> str:
    return next(
        (name for kind, name in _JSON_TYPES if isinstance(value, kind)), type(value).__name__
    )


def _is_datetime(value: str) -> bool:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _where(path: str) -> str:
    return path or "(response)"


def violations(spec: Field | Schema, value: Any, path: str = "") -> list[str]:
    """Every way `value` differs from `spec`, each prefixed with the field's path."""
    if isinstance(spec, Schema):
        return _object_violations(spec, value, path)
    return _field_violations(spec, value, path)


def _object_violations(schema: Schema, value: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{_where(path)}: expected object, got {_json_type(value)}"]
    found: list[str] = []
    prefix = f"{path}." if path else ""
    for name, spec in schema.fields.items():
        if name not in value:
            if spec.required:
                found.append(f"{prefix}{name}: missing")
            continue
        found += _field_violations(spec, value[name], prefix + name)
    for name in sorted(set(value) - set(schema.fields) - schema.extensions):
        found.append(f"{prefix}{name}: not in the reference and not a documented extension")
    return found


_SCALAR_TYPES: Final = {
    "string": {"string"},
    "uuid": {"string"},
    "datetime": {"string"},
    "float": {"float"},
    "integer": {"int"},
    "boolean": {"boolean"},
    "array": {"array"},
    "object": {"object"},
}


def _field_violations(spec: Field, value: Any, path: str) -> list[str]:
    where = _where(path)
    if value is None:
        return [] if spec.nullable else [f"{where}: null, but the reference types it {spec.kind}"]
    got = _json_type(value)
    if got not in _SCALAR_TYPES[spec.kind]:
        return [f"{where}: expected {spec.kind}, got {got}"]
    if spec.kind == "uuid" and not _is_uuid(value):
        return [f"{where}: expected uuid, got {value!r}"]
    if spec.kind == "datetime" and not _is_datetime(value):
        return [f"{where}: expected an ISO 8601 datetime with offset, got {value!r}"]
    if spec.enum is not None and value not in spec.enum | spec.extended_enum:
        allowed = ", ".join(sorted(spec.enum)) + (
            f" (extensions: {', '.join(sorted(spec.extended_enum))})" if spec.extended_enum else ""
        )
        return [f"{where}: {value!r} is not one of {allowed}"]
    if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
        return [f"{where}: {value!r} does not match {spec.pattern}"]
    found: list[str] = []
    if spec.kind == "array" and spec.items is not None:
        for i, item in enumerate(value):
            found += violations(spec.items, item, f"{path}[{i}]")
    if spec.kind == "object" and spec.values is not None:
        for name, item in value.items():
            found += violations(spec.values, item, f"{path}.{name}")
    return found


def check(spec: Field | Schema, value: Any, what: str) -> None:
    """Assert that `value` (the response to `what`) is as the reference says."""
    found = violations(spec, value)
    assert not found, f"{what} breaks the reference:\n  " + "\n  ".join(found)


# --- the reference's responses ---------------------------------------------------------------

OPENAPI: Final = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def documented_extensions(component: str) -> frozenset[str]:
    """The fields the OpenAPI document marks as extensions (`Extension (not in the Calls API
    reference): …`) in one of its schemas: what docs/api.md calls extensions. A field added
    there with that mark is allowed here without touching this module."""
    document = json.loads(OPENAPI.read_text(encoding="utf-8"))
    properties = document["components"]["schemas"][component]["properties"]
    return frozenset(
        name
        for name, spec in properties.items()
        if spec.get("description", "").startswith("Extension")
    )


def _enum(*values: str) -> frozenset[str]:
    return frozenset(values)


STRING: Final = Field("string")
NULLABLE_STRING: Final = Field("string", nullable=True)
INTEGER: Final = Field("integer")
DATETIME: Final = Field("datetime")

# Call SIDs as the reference shows them: Twilio's `CA…`, or the `queued-` placeholder (the
# first 12 hex digits of the call id) until the worker has dialed the call.
CALL_SID_PATTERN: Final = r"CA[0-9a-fA-F]+|queued-[0-9a-f]{12}"

# "Call status (completed, failed, in-progress, queued)"
CALL_STATUSES: Final = _enum("completed", "failed", "in-progress", "queued")
# "Call outcome (completed, voicemail, invalid_number, caller_hangup)", and the outcomes
# docs/api.md adds as extensions
OUTCOMES: Final = _enum("completed", "voicemail", "invalid_number", "caller_hangup")
# ours beyond those: the shared vocabulary, each one documented in docs/api.md's outcome table
OUTCOME_EXTENSIONS: Final = frozenset(OUR_OUTCOMES) - OUTCOMES

# GET /calls items: the example item and the Call Log Fields table.
CALL_LOG_ITEM: Final = Schema(
    {
        "id": Field("uuid"),
        "call_sid": Field("string", pattern=CALL_SID_PATTERN),
        "direction": Field("string", enum=_enum("inbound", "outbound")),
        "from_number": STRING,
        "to_number": STRING,
        "start_time": DATETIME,
        "end_time": Field("datetime", nullable=True),
        "duration": Field("float", nullable=True),
        "status": Field("string", enum=CALL_STATUSES),
        "outcome": Field("string", nullable=True, enum=OUTCOMES, extended_enum=OUTCOME_EXTENSIONS),
        "error_reason": NULLABLE_STRING,
        "created_at": DATETIME,
        "agent_name": NULLABLE_STRING,
    },
    extensions=documented_extensions("CallSummary"),
)

CALL_LIST: Final = Schema(
    {
        "items": Field("array", items=CALL_LOG_ITEM),
        "total": INTEGER,
        "page": INTEGER,
        "page_size": INTEGER,
    }
)

# GET /calls/{call_id}: the example detail and the Additional Detail Fields table.
TRANSCRIPT_TURN: Final = Schema({"role": STRING, "content": STRING})
PROVIDER_USE: Final = Schema({"type": STRING, "model": STRING})
CALL_DETAIL: Final = CALL_LOG_ITEM.extended(
    {
        "transcript": Field("array", nullable=True, items=TRANSCRIPT_TURN),
        "provider_usage": Field("object", nullable=True, values=PROVIDER_USE),
        "recording_url": Field("string", nullable=True, pattern=r"call-.+\.wav"),
    },
    extensions=documented_extensions("Call"),
)

# POST /calls: 202
CALL_ACCEPTED: Final = Schema(
    {
        "call_id": Field("uuid"),
        "call_sid": Field("string", pattern=r"queued-[0-9a-f]{12}"),
        "status": Field("string", enum=_enum("queued")),
    }
)

# POST /calls/batch: 202
BATCH_ACCEPTED: Final = Schema(
    {"batch_id": STRING, "total": INTEGER, "status": Field("string", enum=_enum("queued"))},
    extensions=documented_extensions("BatchAccepted"),
)

# GET /calls/batch/{batch_id}: entries carry `error` only when failed, in the example.
BATCH_ENTRY: Final = Schema(
    {
        "to_number": STRING,
        "status": Field(
            "string",
            enum=_enum("initiated", "queued", "failed"),
            extended_enum=_enum("canceled"),
        ),
        "call_sid": Field("string", nullable=True, pattern=r"CA[0-9a-fA-F]+"),
        "error": Field("string", nullable=True, required=False),
    },
    extensions=documented_extensions("BatchCall"),
)
BATCH_STATUS: Final = Schema(
    {
        "batch_id": STRING,
        "total": INTEGER,
        "queued": INTEGER,
        "initiated": INTEGER,
        "failed": INTEGER,
        "calls": Field("array", items=BATCH_ENTRY),
    },
    extensions=documented_extensions("Batch"),
)
