"""Recording reports never received: a RecordingReported whose message never reached
recordings.requests (published before the queue existed, a queue deleted or purged) would
leave its recording unstored for good. The service tails the event store for RecordingReported
(its own checkpoint in recordings.intake_checkpoints) and captures, as its consumer would,
every report older than the grace whose recording has no row."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final

from calls_events import Envelope, RecordingReported
from calls_platform.db import Conn, Pool
from calls_platform.intake import IntakeWatchdog
from prometheus_client import Counter

from .consumer import RecordingCapture

CHECKPOINT: Final = "recording-reports"

TAKEN_IN = Counter(
    "recordings_taken_in_by_watchdog_total",
    "Recording reports the recordings queue never brought, taken in from the event store",
)


def reports_of(envelopes: Sequence[Envelope]) -> list[tuple[Envelope, RecordingReported]]:
    return [(e, event) for e in envelopes if isinstance(event := e.event(), RecordingReported)]


class RecordingIntake:
    def __init__(self, capture: RecordingCapture) -> None:
        self._capture = capture

    async def take_in(self, conn: Conn, envelopes: Sequence[Envelope]) -> int:
        """Capture the reports whose recording has no row (the rest the consumer had)."""
        reports = reports_of(envelopes)
        cur = await conn.execute(
            "SELECT recording_sid FROM recordings.recordings WHERE recording_sid = ANY(%s)",
            ([report.recording_sid for _, report in reports],),
        )
        known = {row["recording_sid"] for row in await cur.fetchall()}
        taken = 0
        for envelope, report in reports:
            if report.recording_sid in known:
                continue
            await self._capture(envelope)  # idempotent, as for a redelivered message
            known.add(report.recording_sid)
            taken += 1
            TAKEN_IN.inc()
        return taken


def intake_watchdog(
    pool: Pool,
    capture: RecordingCapture,
    *,
    grace_seconds: float,
    clock: Callable[[], datetime] | None = None,
) -> IntakeWatchdog:
    return IntakeWatchdog(
        pool,
        name=CHECKPOINT,
        checkpoint_table="recordings.intake_checkpoints",
        types=[RecordingReported.TYPE],
        take_in=RecordingIntake(capture).take_in,
        grace_seconds=grace_seconds,
        clock=clock,
    )
