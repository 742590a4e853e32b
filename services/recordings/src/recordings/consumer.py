"""What the recordings service takes from RabbitMQ: the carrier's recording reports. A completed
recording is downloaded, verified and stored; absent and failed ones are recorded as such.
Idempotent: a report delivered twice stores the recording once."""

from __future__ import annotations

import tempfile
from typing import Final

import structlog
from calls_events import Envelope, RecordingReported
from calls_platform import topology
from calls_platform.db import Conn, Pool

from . import catalog
from .domain import WAV_CONTENT_TYPE, RetryPolicy, storage_key
from .download import RECORDING_DOWNLOADS, GaveUp, RecordingDownloader
from .storage import Storage

log = structlog.get_logger(__name__)

# bound to RecordingReported (calls_platform.topology)
QUEUE: Final = topology.RECORDINGS_REQUESTS


class UnexpectedEvent(Exception):
    """A message this queue should never carry (dead-lettered, not retried)."""


class RecordingCapture:
    def __init__(
        self,
        pool: Pool,
        storage: Storage,
        downloader: RecordingDownloader,
        policy: RetryPolicy,
        *,
        spool_dir: str | None = None,
    ) -> None:
        self._pool = pool
        self._storage = storage
        self._downloader = downloader
        self._policy = policy
        self._spool_dir = spool_dir

    async def __call__(self, envelope: Envelope) -> None:
        report = envelope.event()
        if not isinstance(report, RecordingReported):
            raise UnexpectedEvent(f"{envelope.event_type} is not a recording report")
        sid = report.recording_sid
        # the connection holds the recording's lock for as long as the download takes
        async with self._pool.connection() as conn:
            if not await catalog.try_lock(conn, sid):
                # the same report, delivered twice, is being handled elsewhere right now; if
                # that worker dies, RabbitMQ redelivers its message
                log.info("recording_already_in_hand", recording_sid=sid)
                return
            try:
                await self._capture(conn, envelope, report)
            finally:
                await catalog.unlock(conn, sid)

    async def _capture(self, conn: Conn, envelope: Envelope, report: RecordingReported) -> None:
        recording, new = await catalog.record_report(conn, envelope, report)
        context = {"call_id": str(report.call_id), "recording_sid": report.recording_sid}
        if recording.state != catalog.PENDING:
            if new:
                log.info("recording_not_made", status=report.status, **context)
            else:
                log.info("recording_report_repeated", state=recording.state, **context)
            return
        if recording.recording_url is None:  # the gateway refuses these; other producers may not
            await catalog.mark_failed(conn, recording, reason="no recording URL", attempts=0)
            RECORDING_DOWNLOADS.labels("refused").inc()
            log.error("recording_without_url", **context)
            return
        key = storage_key(recording.organization_id, recording.call_id, recording.recording_sid)
        with tempfile.TemporaryFile(dir=self._spool_dir, prefix="recording-") as spool:
            try:
                downloaded = await self._downloader.fetch_with_retries(
                    recording.recording_url, spool, self._policy
                )
            except GaveUp as exc:
                await catalog.mark_failed(conn, recording, reason=exc.reason, attempts=exc.attempts)
                RECORDING_DOWNLOADS.labels("refused" if exc.refused else "failed").inc()
                log.error(
                    "recording_download_failed", reason=exc.reason, attempts=exc.attempts, **context
                )
                return
            size = await self._storage.put(key, spool)
        await catalog.mark_stored(
            conn,
            recording,
            storage_key=key,
            size_bytes=size,
            content_type=WAV_CONTENT_TYPE,
            attempts=downloaded.attempts,
        )
        RECORDING_DOWNLOADS.labels("stored").inc()
        log.info("recording_stored", size_bytes=size, attempts=downloaded.attempts, **context)
