"""The AsyncAPI 3.0 document of `calls.events` (and `calls.inbox`), generated from libs/events
(every event type and its data's JSON Schema, the envelope) and from the topology (the
exchanges, the consumer queues and their bindings).

python -m calls_platform.asyncapi docs/asyncapi.json   (make asyncapi)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

from calls_events import event_types
from calls_events.schema import schemas

from . import amqp, topology

VERSION: Final = "3.0.0"
# AMQP bindings of AsyncAPI (github.com/asyncapi/bindings, amqp)
AMQP_BINDING: Final = "0.3.0"

_DESCRIPTION = """\
Everything that happens to a call is an event: appended to the event store (PostgreSQL) and
published by the outbox relay to the durable topic exchange `calls.events`, with the event type
as routing key. Each message's body is the envelope (JSON); its `data` is the event's own
payload. A subscriber binds a durable queue of its own to the types it wants.

Guarantees: at least once (deduplicate by `message_id`, which is the event id); in order per
call stream (by `stream_version`), not across streams; every event is persistent, published
mandatory and confirmed by the broker. A subscriber that starts late backfills from the event
store with `callsctl replay`. See docs/events.md."""


def _hoist(schema: dict[str, Any], into: dict[str, Any]) -> dict[str, Any]:
    """A pydantic schema with its `$defs` moved to components/schemas (refs rewritten)."""
    defs = schema.pop("$defs", {})
    for name, definition in defs.items():
        into[name] = definition
    text = json.dumps(schema).replace('"#/$defs/', '"#/components/schemas/')
    for name in defs:
        into[name] = json.loads(
            json.dumps(into[name]).replace('"#/$defs/', '"#/components/schemas/')
        )
    hoisted: dict[str, Any] = json.loads(text)
    return hoisted


def _headers() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "AMQP headers of every message (besides message_id = event id, type ="
        " event type, correlation_id, content_type application/json, delivery_mode 2).",
        "properties": {
            "event_type": {"type": "string"},
            "event_version": {"type": "integer"},
            "organization_id": {"type": "string"},
            "position": {"type": "integer", "description": "Global position in the event store"},
        },
        "required": ["event_type", "event_version", "organization_id", "position"],
    }


def _queue_channel(spec: topology.QueueSpec) -> dict[str, Any]:
    return {
        "address": spec.name,
        "title": spec.name,
        "description": f"The {spec.owner or 'consumer'}'s quorum queue, bound to"
        f" `{spec.exchange}` by routing keys {', '.join(spec.bindings)}; dead letters (after"
        f" {amqp.DELIVERY_LIMIT} deliveries) go to `{amqp.DEAD_LETTER_EXCHANGE}`.",
        "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in spec.bindings},
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {
                    "name": spec.name,
                    "durable": True,
                    "exclusive": False,
                    "autoDelete": False,
                    "vhost": "/",
                },
                "bindingVersion": AMQP_BINDING,
            }
        },
    }


def _exchange_channel(name: str, types: list[str], description: str) -> dict[str, Any]:
    return {
        "address": name,
        "title": name,
        "description": description,
        "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in types},
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {
                    "name": name,
                    "type": "topic",
                    "durable": True,
                    "autoDelete": False,
                    "vhost": "/",
                },
                "bindingVersion": AMQP_BINDING,
            }
        },
    }


def _channel_id(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", ".").split("."))


def document() -> dict[str, Any]:
    """The AsyncAPI document, deterministic (sorted event types)."""
    components: dict[str, Any] = {}
    all_schemas = schemas()
    components["Envelope"] = _hoist(all_schemas.pop("Envelope"), components)
    types = sorted(all_schemas)
    for name in types:
        components[name] = _hoist(all_schemas[name], components)
    classes = event_types()
    messages = {
        name: {
            "name": name,
            "title": name,
            "summary": (classes[name].__doc__ or "").strip().split("\n\n")[0] or name,
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/MessageHeaders"},
            "correlationId": {"$ref": "#/components/correlationIds/CorrelationId"},
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/Envelope"},
                    {
                        "type": "object",
                        "properties": {
                            "event_type": {"const": name},
                            "event_version": {"const": classes[name].VERSION},
                            "data": {"$ref": f"#/components/schemas/{name}"},
                        },
                    },
                ]
            },
            "bindings": {"amqp": {"messageType": name, "bindingVersion": AMQP_BINDING}},
        }
        for name in types
    }
    components["MessageHeaders"] = _headers()
    inbox_types = [
        t for s in topology.QUEUES if s.exchange == amqp.INBOX_EXCHANGE for t in s.bindings
    ]
    channels: dict[str, Any] = {
        "callsEvents": _exchange_channel(
            amqp.EVENTS_EXCHANGE,
            types,
            "Every event the event store holds, routing key = event type.",
        ),
        "callsInbox": _exchange_channel(
            amqp.INBOX_EXCHANGE,
            sorted(set(inbox_types)),
            "Reports from systems outside the HTTP API, for the gateway to record (then they"
            " appear on calls.events like any other event).",
        ),
    }
    operations: dict[str, Any] = {
        "relayCallEvents": {
            "action": "send",
            "channel": {"$ref": "#/channels/callsEvents"},
            "title": "The outbox relay publishes every stored event",
            "description": "In event-store order; persistent, mandatory, publisher-confirmed;"
            " the relay's checkpoint passes an event only once it is confirmed and routed.",
            "messages": [{"$ref": f"#/channels/callsEvents/messages/{t}"} for t in types],
            "bindings": {
                "amqp": {"deliveryMode": 2, "mandatory": True, "bindingVersion": AMQP_BINDING}
            },
        },
        "reportToInbox": {
            "action": "send",
            "channel": {"$ref": "#/channels/callsInbox"},
            "title": "Publish a report for the gateway to record",
            "messages": [
                {"$ref": f"#/channels/callsInbox/messages/{t}"} for t in sorted(set(inbox_types))
            ],
        },
    }
    for spec in topology.QUEUES:
        channel_id = _channel_id(spec.name)
        channels[channel_id] = _queue_channel(spec)
        operations[f"consume{channel_id}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "title": f"{spec.owner or 'A consumer'} consumes {spec.name}",
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{t}"} for t in spec.bindings],
            "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING}},
        }
    return {
        "asyncapi": VERSION,
        "id": "urn:calls-backend:events",
        "info": {
            "title": "Calls events",
            "version": "1.0.0",
            "description": _DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "rabbitmq:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "The deployment's RabbitMQ (AMQP_URL).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": dict(sorted(components.items())),
            "messages": messages,
            "correlationIds": {
                "CorrelationId": {
                    "description": "The request that caused the event (X-Correlation-ID).",
                    "location": "$message.payload#/correlation_id",
                }
            },
        },
    }


def render() -> str:
    return json.dumps(document(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> None:
    target = Path((argv or sys.argv[1:] or ["docs/asyncapi.json"])[0])
    target.write_text(render())


if __name__ == "__main__":
    main()
