"""What the dialer takes from RabbitMQ: calls to dial (one by one, or a batch's in its
request), batches to cancel, pause or resume,
do-not-call and calling-policy changes (campaign rules it applies at dial time), carrier reports
that reveal the SID of an attempt whose answer was lost (and that a recorded call ended), and
recording reports (a call whose recording callback came needs no listing of its recordings at
the carrier). Every handler is idempotent."""

from __future__ import annotations

from typing import Final

from calls_events import (
    BatchCancelRequested,
    BatchRequested,
    CallRequested,
    CallStatusReported,
    Envelope,
    RecordingReported,
)
from calls_platform import topology
from calls_platform.db import Pool

from . import (
    attempts,
    campaign_store,
    carrier_news,
    dial_queue,
    dials,
    lost_recordings,
    recording_checks,
)
from .dials import WORK_CHANNEL
from .statuses import TERMINAL

# The dialer's queues (bindings in calls_platform.topology): requests, and cancels in a queue of
# their own so they never wait behind a backlog of requests.
QUEUES: Final = (topology.DIALER_REQUESTS, topology.DIALER_CONTROL)


class Handlers:
    def __init__(
        self,
        pool: Pool,
        *,
        recording_grace_seconds: float = lost_recordings.RECORDING_GRACE_SECONDS,
    ) -> None:
        self._pool = pool
        self._recording_grace = recording_grace_seconds

    async def __call__(self, envelope: Envelope) -> None:
        await self.handle_many([envelope])

    async def handle_many(self, envelopes: list[Envelope]) -> None:
        """Handle what arrived together: requests in one transaction, the rest in order."""
        events = [(envelope, envelope.event()) for envelope in envelopes]
        async with self._pool.connection() as conn:
            await dial_queue.enqueue_many(
                conn, [(e, event) for e, event in events if isinstance(event, CallRequested)]
            )
            for envelope, event in events:
                if isinstance(event, BatchRequested):
                    # the calls it carries (an older batch's come as CallRequested)
                    await dial_queue.enqueue_batch(conn, envelope, event)
                elif isinstance(event, BatchCancelRequested):
                    await dial_queue.cancel_batch(conn, envelope.organization_id, event.batch_id)
                elif isinstance(event, CallStatusReported):
                    # one commit: a call that ended is never left without its retry
                    async with conn.transaction():
                        # a callback names our call id: if its dial is still unresolved, this
                        # is its SID
                        await attempts.mark_initiated(
                            conn, event.call_id, event.call_sid, "callback"
                        )
                        await carrier_news.note_carrier_status(
                            conn,
                            event.call_id,
                            event.carrier_status,
                            reported_at=event.reported_at,
                            recording_grace_seconds=self._recording_grace,
                        )
                        if event.carrier_status in TERMINAL:
                            await carrier_news.note_call_ended(
                                conn, event.call_id, answered_by=event.answered_by
                            )
                elif isinstance(event, campaign_store.CAMPAIGN_EVENTS):
                    async with conn.transaction():
                        folded = await campaign_store.apply_campaign_event(conn, envelope, event)
                        if folded.unblocks:
                            await dials.notify(conn, WORK_CHANNEL)
                elif isinstance(event, RecordingReported) and event.reported_via == "callback":
                    # the dialer's own reports (listed at the carrier) are accounted for when
                    # it appends them
                    await recording_checks.note_recording_reported(conn, event.call_id)
