"""Reports published to RabbitMQ by systems outside the gateway's HTTP API.

Voice-agent runtimes written in other languages may publish `ConversationReported` envelopes
(JSON Schema in docs/events) to the topic exchange `calls.inbox` with the event type as routing
key, instead of calling POST /calls/{call_id}/conversation. The gateway checks each one as it
would the HTTP request (the call exists and belongs to the envelope's organization) and appends
it to the event store under the publisher's event id, so a redelivered message is stored once.
"""

from __future__ import annotations

from typing import Final

import structlog
from calls_events import ConversationReported, Envelope, call_stream
from calls_platform import eventstore, topology
from calls_platform.db import Pool
from calls_platform.metrics import EVENTS_APPENDED

log = structlog.get_logger(__name__)

# bound to ConversationReported on calls.inbox (calls_platform.topology)
QUEUE: Final = topology.GATEWAY_INBOX


class UnacceptableReport(Exception):
    """The message can never be appended (it is dead-lettered, not retried)."""


class InboxHandler:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def __call__(self, envelope: Envelope) -> None:
        event = envelope.event()
        if not isinstance(event, ConversationReported):
            raise UnacceptableReport(f"{envelope.event_type} is not accepted on the inbox")
        async with self._pool.connection() as conn:
            continued = await eventstore.continue_stream(
                conn,
                call_stream(event.call_id),
                event,
                event_id=envelope.event_id,
                organization_id=envelope.organization_id,
                causation_id=envelope.causation_id,
            )
        if continued is None:
            raise UnacceptableReport(f"no call {event.call_id} in {envelope.organization_id}")
        if not continued.appended:  # a redelivery: stored already
            log.info(
                "inbox_report_repeated", call_id=str(event.call_id), event_id=str(envelope.event_id)
            )
            return
        EVENTS_APPENDED.labels(ConversationReported.TYPE).inc()
        log.info(
            "inbox_report_appended", call_id=str(event.call_id), event_id=str(envelope.event_id)
        )
