"""What the webhooks service takes from RabbitMQ: every stored event of a call's or a batch's
stream, turned into webhook messages and queued as deliveries, in one transaction with the
stream's state (so a redelivered event queues nothing twice).

Events are taken strictly in stream order: one that arrives ahead of its stream's earlier
events (consumers run concurrently, redeliveries come late) brings those with it from the
event store, so a call's messages are queued in the order its events were stored; one seen
before is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import structlog
from calls_events import Envelope
from calls_platform import topology
from calls_platform.db import Conn, Pool
from prometheus_client import Counter

from . import history, store
from .calllog import CallLog, CallLogUnavailable
from .domain import Message, batch_completed, is_batch_complete, translate

log = structlog.get_logger(__name__)

# The queue (its bindings, every event type, are in calls_platform.topology): an event of a
# call's stream missing from the queue would leave a gap the stream waits on.
QUEUE: Final = topology.WEBHOOKS_EVENTS

EVENTS_TAKEN = Counter(
    "webhook_events_taken_total",
    "Stored events the webhooks service took, by result (new, repeated, ignored)",
    ["result"],
)
MESSAGES_QUEUED = Counter(
    "webhook_messages_queued_total", "Webhook deliveries queued, by event type", ["type"]
)


class Intake:
    def __init__(self, pool: Pool, call_log: CallLog, clock: Callable[[], datetime]) -> None:
        self._pool = pool
        self._call_log = call_log
        self._clock = clock

    async def __call__(self, envelope: Envelope) -> None:
        stream = envelope.stream_id
        if envelope.stream_version is None or not stream.startswith(("call-", "batch-")):
            EVENTS_TAKEN.labels("ignored").inc()
            return
        # An organization without an enabled endpoint cannot be sent anything from this event
        # (an endpoint gets what happens after it is created): nothing is written. Should it
        # create one later, its streams' next events find their gap and fold what came before.
        async with self._pool.connection() as conn:
            if not await store.has_enabled_endpoint(conn, envelope.organization_id):
                EVENTS_TAKEN.labels("ignored").inc()
                return
        # the call's (or batch's) view, fetched once per sequence, only for a message that
        # some endpoint is subscribed to
        views: dict[str, dict[str, Any] | None] = {}
        async with self._pool.connection() as conn, conn.transaction():
            state = await store.lock_stream(conn, stream)
            if envelope.stream_version < state.next_version:
                EVENTS_TAKEN.labels("repeated").inc()
                return
            events = (
                [envelope]
                if envelope.stream_version == state.next_version
                else await history.stream_events(
                    conn, stream, versions_from=state.next_version, upto=envelope.stream_version
                )
            )
            now = self._clock()
            for event in events:
                translation = translate(state, event)
                state = translation.state
                messages = list(translation.messages)
                if translation.batch_total is not None:
                    batch_id, total = translation.batch_total
                    progress = await store.count_batch(
                        conn, batch_id, event.organization_id, total=total
                    )
                    messages += await self._completion(conn, batch_id, event, progress)
                if translation.call_ended_in_batch is not None:
                    batch_id = translation.call_ended_in_batch
                    progress = await store.count_batch(
                        conn, batch_id, event.organization_id, ended=1
                    )
                    messages += await self._completion(conn, batch_id, event, progress)
                for message in messages:
                    await self._queue(conn, message, views, now)
            await store.save_stream(conn, stream, state)
        EVENTS_TAKEN.labels("new").inc(len(events))

    async def _completion(
        self, conn: Conn, batch_id: str, event: Envelope, progress: store.BatchProgress
    ) -> list[Message]:
        if progress.completed or not is_batch_complete(progress.total, progress.ended):
            return []
        await store.mark_batch_completed(conn, batch_id)
        assert event.position is not None
        return [
            batch_completed(
                batch_id, event.organization_id, position=event.position, at=event.occurred_at
            )
        ]

    async def _queue(
        self,
        conn: Conn,
        message: Message,
        views: dict[str, dict[str, Any] | None],
        now: datetime,
    ) -> None:
        endpoints = await store.subscribers(
            conn, message.organization_id, message.type, message.created_at
        )
        if not endpoints:
            return
        data = await self._view(message, views)
        added = await store.add_deliveries(conn, message, endpoints, data, now=now)
        MESSAGES_QUEUED.labels(message.type).inc(added)

    async def _view(
        self, message: Message, views: dict[str, dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """The call or batch as GET shows it now, frozen into the delivery; None when the call
        log does not answer (the sender fetches it before the first attempt instead)."""
        key = message.sequence_key
        if key not in views:
            try:
                views[key] = await self._call_log.view(
                    organization_id=message.organization_id,
                    event_type=message.type,
                    call_id=message.call_id,
                    batch_id=message.batch_id,
                )
            except CallLogUnavailable as exc:
                log.warning("call_log_unavailable_at_intake", error=str(exc))
                return None
        return views[key]
