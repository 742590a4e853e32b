"""The contract checker catches what a client written from the reference would trip on, and the
reference's own examples pass it; every extension it allows is one the OpenAPI document marks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.contract.reference import (
    BATCH_ACCEPTED,
    BATCH_ENTRY,
    BATCH_STATUS,
    CALL_ACCEPTED,
    CALL_DETAIL,
    CALL_LIST,
    CALL_LOG_ITEM,
    EXAMPLE_TRANSCRIPT,
    EXAMPLE_USAGE,
    OUTCOME_EXTENSIONS,
    Schema,
    violations,
)

REPO = Path(__file__).resolve().parents[2]

# The reference's example responses, verbatim.
LIST_EXAMPLE: dict[str, Any] = {
    "items": [
        {
            "id": "550e8400-e29b-41d4-a716-446655440000",
            "call_sid": "CA1234567890abcdef",
            "direction": "inbound",
            "from_number": "+15551234567",
            "to_number": "+15559876543",
            "start_time": "2026-03-01T14:30:00Z",
            "end_time": "2026-03-01T14:32:45Z",
            "duration": 165.0,
            "status": "completed",
            "outcome": "completed",
            "error_reason": None,
            "created_at": "2026-03-01T14:30:00Z",
            "agent_name": "Support Agent",
        }
    ],
    "total": 142,
    "page": 1,
    "page_size": 20,
}
DETAIL_EXAMPLE: dict[str, Any] = {
    **LIST_EXAMPLE["items"][0],
    "transcript": [dict(turn) for turn in EXAMPLE_TRANSCRIPT],
    "provider_usage": {
        **copy.deepcopy(EXAMPLE_USAGE),
        "elevenlabs": {"type": "tts", "model": "eleven_turbo_v2"},
    },
    "recording_url": "call-CA1234567890abcdef.wav",
}
ACCEPTED_EXAMPLE = {
    "call_id": "550e8400-e29b-41d4-a716-446655440000",
    "call_sid": "queued-550e8400e29b",
    "status": "queued",
}
BATCH_ACCEPTED_EXAMPLE = {"batch_id": "batch-abc123", "total": 3, "status": "queued"}
BATCH_EXAMPLE: dict[str, Any] = {
    "batch_id": "batch-abc123",
    "total": 3,
    "queued": 1,
    "initiated": 1,
    "failed": 1,
    "calls": [
        {"to_number": "+15551111111", "status": "initiated", "call_sid": "CA..."},
        {"to_number": "+15552222222", "status": "queued", "call_sid": None},
        {
            "to_number": "+15553333333",
            "status": "failed",
            "call_sid": None,
            "error": "Invalid number",
        },
    ],
}


@pytest.mark.parametrize(
    ("schema", "example"),
    [
        (CALL_LIST, LIST_EXAMPLE),
        (CALL_DETAIL, DETAIL_EXAMPLE),
        (CALL_ACCEPTED, ACCEPTED_EXAMPLE),
        (BATCH_ACCEPTED, BATCH_ACCEPTED_EXAMPLE),
    ],
    ids=["list", "detail", "call accepted", "batch accepted"],
)
def test_the_references_own_examples_pass(schema: Schema, example: dict[str, Any]) -> None:
    assert violations(schema, example) == []


def test_the_references_batch_example_passes_but_for_its_sid_placeholder() -> None:
    """The example abbreviates the SID as `CA...`; anything else in it is as the schema says."""
    assert violations(BATCH_STATUS, BATCH_EXAMPLE) == [
        "calls[0].call_sid: 'CA...' does not match CA[0-9a-fA-F]+"
    ]


def changed(example: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """The example with the field at `path` set to `value` (or removed, for `...`)."""
    copied = copy.deepcopy(example)
    target: Any = copied
    for step in path[:-1]:
        target = target[step]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return copied


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("items", 0, "id"), ..., ["items[0].id: missing"]),
        (("items", 0, "duration"), 165, ["items[0].duration: expected float, got int"]),
        (("items", 0, "duration"), "165", ["items[0].duration: expected float, got string"]),
        (
            ("items", 0, "call_sid"),
            None,
            ["items[0].call_sid: null, but the reference types it string"],
        ),
        (
            ("items", 0, "start_time"),
            None,
            ["items[0].start_time: null, but the reference types it datetime"],
        ),
        (
            ("items", 0, "status"),
            "ringing",
            [
                "items[0].status: 'ringing' is not one of completed, failed, in-progress, queued",
            ],
        ),
        (
            ("items", 0, "outcome"),
            "hung_up",
            [
                "items[0].outcome: 'hung_up' is not one of caller_hangup, completed, "
                "invalid_number, voicemail (extensions: busy, canceled, do_not_call, expired, "
                "failed, no_answer)"
            ],
        ),
        (("items", 0, "id"), "550e8400", ["items[0].id: expected uuid, got '550e8400'"]),
        (
            ("items", 0, "created_at"),
            "2026-03-01 14:30",
            [
                "items[0].created_at: expected an ISO 8601 datetime with offset, "
                "got '2026-03-01 14:30'"
            ],
        ),
        (("total",), 1.0, ["total: expected integer, got float"]),
        (("total",), True, ["total: expected integer, got boolean"]),
        (("items",), {}, ["items: expected array, got object"]),
        (("items", 0), [], ["items[0]: expected object, got array"]),
        (("items", 0, "outcome"), None, []),  # nullable
        (("items", 0, "end_time"), None, []),
        (("items", 0, "outcome"), "no_answer", []),  # a documented extension
    ],
    ids=[
        "missing",
        "int-for-float",
        "string-for-float",
        "null-sid",
        "null-start-time",
        "status-out-of-vocabulary",
        "outcome-out-of-vocabulary",
        "not-a-uuid",
        "not-a-datetime",
        "float-for-integer",
        "bool-for-integer",
        "object-for-array",
        "array-for-object",
        "null-outcome-ok",
        "null-end-time-ok",
        "extension-outcome-ok",
    ],
)
def test_each_kind_of_break_is_caught_with_its_path(
    path: tuple[str | int, ...], value: Any, expected: list[str]
) -> None:
    assert violations(CALL_LIST, changed(LIST_EXAMPLE, path, value)) == expected


def test_a_renamed_field_is_missing_and_unknown() -> None:
    item = dict(LIST_EXAMPLE["items"][0])
    item["callSid"] = item.pop("call_sid")

    assert violations(CALL_LOG_ITEM, item) == [
        "call_sid: missing",
        "callSid: not in the reference and not a documented extension",
    ]


def test_a_documented_extension_is_allowed_an_undocumented_one_is_not() -> None:
    item = {**LIST_EXAMPLE["items"][0], "call_id": "550e8400-e29b-41d4-a716-446655440000"}

    assert violations(CALL_LOG_ITEM, item) == []
    assert violations(CALL_LOG_ITEM, {**item, "dialed_at": "x"}) == [
        "dialed_at: not in the reference and not a documented extension"
    ]


def test_nested_arrays_and_maps_are_checked_with_their_path() -> None:
    detail = changed(DETAIL_EXAMPLE, ("transcript", 1, "content"), None)
    detail = changed(detail, ("provider_usage", "openai", "model"), ...)

    assert violations(CALL_DETAIL, detail) == [
        "transcript[1].content: null, but the reference types it string",
        "provider_usage.openai.model: missing",
    ]


def test_an_optional_field_may_be_absent_but_not_mistyped() -> None:
    entry = {"to_number": "+15551111111", "status": "queued", "call_sid": None}

    assert violations(BATCH_ENTRY, entry) == []
    assert violations(BATCH_ENTRY, {**entry, "error": 3}) == ["error: expected string, got int"]
    assert violations(BATCH_ENTRY, {**entry, "status": "completed"}) == [
        "status: 'completed' is not one of failed, initiated, queued (extensions: canceled)"
    ]


# OpenAPI component ↔ the schema of the same response here
COMPONENTS = {
    "CallSummary": CALL_LOG_ITEM,
    "Call": CALL_DETAIL,
    "CallAccepted": CALL_ACCEPTED,
    "BatchAccepted": BATCH_ACCEPTED,
    "Batch": BATCH_STATUS,
    "BatchCall": BATCH_ENTRY,
    "CallPage": CALL_LIST,
}


def test_the_extensions_read_from_the_document_include_ours() -> None:
    """documented_extensions reads them from the OpenAPI document (so a field added there,
    marked, needs no change here); at least these are there."""
    assert {"call_id", "carrier_status", "agent_id", "batch_id"} <= CALL_LOG_ITEM.extensions
    assert CALL_LOG_ITEM.extensions | {"error_code", "answered_by"} <= CALL_DETAIL.extensions
    assert {"call_id", "call_status", "carrier_status", "outcome"} <= BATCH_ENTRY.extensions
    assert {"status", "canceled", "duplicates_dropped", "created_at"} <= BATCH_STATUS.extensions
    assert {"duplicates_dropped"} <= BATCH_ACCEPTED.extensions
    assert {"busy", "no_answer", "canceled", "failed"} <= OUTCOME_EXTENSIONS
    # and none of the reference's own fields is taken for one
    for schema in (CALL_DETAIL, BATCH_STATUS, BATCH_ENTRY, BATCH_ACCEPTED, CALL_ACCEPTED):
        assert not schema.extensions & set(schema.fields)


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_the_openapi_document_names_every_reference_field_and_marks_every_extension(
    component: str,
) -> None:
    document = json.loads((REPO / "docs" / "openapi.json").read_text(encoding="utf-8"))
    properties = document["components"]["schemas"][component]["properties"]
    schema = COMPONENTS[component]

    assert set(schema.fields) <= set(properties)
    assert set(properties) - set(schema.fields) == schema.extensions
    for name in schema.extensions:
        assert properties[name].get("description", "").startswith("Extension"), name
