"""What the dialer takes from RabbitMQ: calls to dial, batches to cancel, carrier reports
that reveal the SID of an attempt whose answer was lost (and that a recorded call ended), and
recording reports (a call whose recording callback came needs no listing of its recordings at
the carrier). Every handler is idempotent."""

from __future__ import annotations

from typing import Final

from calls_events import (
    BatchCancelRequested,
    CallRequested,
    CallStatusReported,
    Envelope,
    RecordingReported,
)
from calls_platform import topology
from calls_platform.db import Pool

from . import dials, lost_recordings

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
            await dials.enqueue_many(
                conn, [(e, event) for e, event in events if isinstance(event, CallRequested)]
            )
            for envelope, event in events:
                if isinstance(event, BatchCancelRequested):
                    await dials.cancel_batch(conn, envelope.organization_id, event.batch_id)
                elif isinstance(event, CallStatusReported):
                    # a callback names our call id: if its dial is still unresolved, this is
                    # its SID
                    await dials.mark_initiated(conn, event.call_id, event.call_sid, "callback")
                    await dials.note_carrier_status(
                        conn,
                        event.call_id,
                        event.carrier_status,
                        reported_at=event.reported_at,
                        recording_grace_seconds=self._recording_grace,
                    )
                elif isinstance(event, RecordingReported) and event.reported_via == "callback":
                    # the dialer's own reports (listed at the carrier) are accounted for when
                    # it appends them
                    await dials.note_recording_reported(conn, event.call_id)
