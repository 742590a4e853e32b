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
from .domain import Message, StreamState, batch_completed, is_batch_complete, translate

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
            # The call's (or batch's) view, as GET shows it now, is fetched from the call log
            # before the transaction, never inside it: the stream's row lock gives the
            # transaction an id, which holds back every event-store reader in the cluster (the
            # call log's projector included, whose read-your-writes wait the fetch would then
            # sit out).
            prepared = await store.peek_stream(conn, stream)
            if envelope.stream_version < prepared.next_version:
                EVENTS_TAKEN.labels("repeated").inc()
                return
            prepared_events = await self._events(conn, envelope, prepared)
            views = await self._prefetch_views(conn, prepared, prepared_events)
        async with self._pool.connection() as conn, conn.transaction():
            state = await store.lock_stream(conn, stream)
            if envelope.stream_version < state.next_version:
                EVENTS_TAKEN.labels("repeated").inc()
                return
            # the stream as prepared (the usual case): its events are already read
            events = (
                prepared_events if state == prepared else await self._events(conn, envelope, state)
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

    async def _events(self, conn: Conn, envelope: Envelope, state: StreamState) -> list[Envelope]:
        """The stream's events from the one `state` expects next up to `envelope`'s."""
        assert envelope.stream_version is not None
        if envelope.stream_version == state.next_version:
            return [envelope]
        return await history.stream_events(
            conn, envelope.stream_id, versions_from=state.next_version, upto=envelope.stream_version
        )

    async def _prefetch_views(
        self, conn: Conn, state: StreamState, events: list[Envelope]
    ) -> dict[str, dict[str, Any] | None]:
        """The views the stream's messages will carry, for those some endpoint subscribes to.
        A message the transaction makes that is not here (a batch's completion, or a stream
        that moved on meanwhile) is queued without one, and the sender fetches it before the
        first attempt."""
        views: dict[str, dict[str, Any] | None] = {}
        for event in events:
            translation = translate(state, event)
            state = translation.state
            for message in translation.messages:
                if message.sequence_key in views:
                    continue
                endpoints = await store.subscribers(
                    conn, message.organization_id, message.type, message.created_at
                )
                if endpoints:
                    views[message.sequence_key] = await self._view(message)
        return views

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
        data = views.get(message.sequence_key)
        added = await store.add_deliveries(conn, message, endpoints, data, now=now)
        MESSAGES_QUEUED.labels(message.type).inc(added)

    async def _view(self, message: Message) -> dict[str, Any] | None:
        """The call or batch as GET shows it now, frozen into the delivery; None when the call
        log does not answer (the sender fetches it before the first attempt instead)."""
        try:
            return await self._call_log.view(
                organization_id=message.organization_id,
                event_type=message.type,
                call_id=message.call_id,
                batch_id=message.batch_id,
            )
        except CallLogUnavailable as exc:
            log.warning("call_log_unavailable_at_intake", error=str(exc))
            return None
