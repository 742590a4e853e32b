"""The AsyncAPI document of the event stream: valid AsyncAPI 3.0 (against the specification's
own JSON Schema), covering every event type and every queue of the topology, current with the
committed docs/asyncapi.json, and describing the messages the relay really sends."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema
from calls_events import CallRequested, ConversationReported, Envelope, call_stream, event_types
from calls_platform import amqp, asyncapi, topology

REPO = Path(__file__).resolve().parents[3]
SPEC = Path(__file__).parent / "asyncapi" / "asyncapi-3.0.0.schema.json"


def spec_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SPEC.read_text(encoding="utf-8")))


def test_the_document_is_valid_asyncapi_3() -> None:
    document = asyncapi.document()
    assert document["asyncapi"] == "3.0.0"
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in spec_validator().iter_errors(document)
    ]
    assert errors == []


def test_the_validator_rejects_what_is_not_asyncapi_3() -> None:
    """The check above can fail: an AsyncAPI 2 operation verb is refused."""
    document = asyncapi.document()
    document["operations"]["relayCallEvents"]["action"] = "publish"
    assert not spec_validator().is_valid(document)


def test_every_event_type_is_a_message_on_calls_events_with_its_data_schema() -> None:
    document = asyncapi.document()
    types = set(event_types())
    assert set(document["components"]["messages"]) == types
    assert set(document["channels"]["callsEvents"]["messages"]) == types
    for name in types:
        assert document["components"]["schemas"][name]["x-event-type"] == name
    binding = document["channels"]["callsEvents"]["bindings"]["amqp"]
    assert (binding["is"], binding["exchange"]["name"], binding["exchange"]["type"]) == (
        "routingKey",
        amqp.EVENTS_EXCHANGE,
        "topic",
    )


def test_every_queue_of_the_topology_is_a_channel_with_its_bindings() -> None:
    channels = asyncapi.document()["channels"]
    queues = {c["address"]: c for c in channels.values() if c["bindings"]["amqp"]["is"] == "queue"}
    assert set(queues) == {spec.name for spec in topology.QUEUES}
    for spec in topology.QUEUES:
        assert set(queues[spec.name]["messages"]) == set(spec.bindings)


def _payload_validator(document: dict[str, Any], message: str) -> jsonschema.Draft202012Validator:
    schema = {
        "$ref": f"#/components/messages/{message}/payload",
        "components": document["components"],
    }
    return jsonschema.Draft202012Validator(schema)


def test_a_relayed_envelope_matches_its_message_payload_and_no_other() -> None:
    document = asyncapi.document()
    call_id = uuid.uuid4()
    requested = CallRequested(
        call_id=call_id, to_number="+14155550100", from_number="+14155550199", requested_by="test"
    )
    envelope = Envelope.wrap(
        requested, stream_id=call_stream(call_id), organization_id="org_a"
    ).model_copy(update={"position": 7, "stream_version": 1})
    body = json.loads(amqp.to_message(envelope).body)
    assert _payload_validator(document, "CallRequested").is_valid(body)
    assert not _payload_validator(document, ConversationReported.TYPE).is_valid(body)
    broken = {**body, "data": {**body["data"], "call_id": 5}}
    assert not _payload_validator(document, "CallRequested").is_valid(broken)


def test_the_committed_document_is_current() -> None:
    committed = (REPO / "docs" / "asyncapi.json").read_text(encoding="utf-8")
    assert committed == asyncapi.render(), "docs/asyncapi.json is stale: run `make asyncapi`"
