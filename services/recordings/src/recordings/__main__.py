"""Composition root of the recordings service: builds every dependency and runs the service.

Every replica consumes the carrier's recording reports from its own queue, downloads and
stores the audio (one replica per recording, by a lock), and serves the internal API the
gateway streams recordings through. Every replica also competes for the outbox-relay
leadership, as every service that appends events does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web
from calls_platform import amqp, leader, queue_depth
from calls_platform.service import Parts, Service, run_service, service_app

from . import api
from .config import Settings
from .consumer import QUEUE, RecordingCapture, UnexpectedEvent
from .download import RecordingDownloader
from .intake import intake_watchdog
from .s3 import S3Storage
from .storage import LocalStorage, Storage

log = structlog.get_logger(__name__)

# how long SIGTERM waits for downloads in flight (within serve()'s shutdown and the pod's
# termination grace period)
DRAIN_SECONDS = 15.0


SERVICE = Service("recordings", schema="recordings")
migrate = SERVICE.migrate


@contextlib.asynccontextmanager
async def open_storage(settings: Settings) -> AsyncIterator[Storage]:
    """S3-compatible storage when a bucket is configured, else the local directory."""
    if settings.s3 is not None:
        async with S3Storage.connect(settings.s3) as storage:
            log.info("recordings_storage", kind="s3", bucket=settings.s3.bucket)
            yield storage
        return
    root = Path(settings.recordings_dir)
    await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
    local = LocalStorage(root)
    log.info("recordings_storage", kind="local", root=str(local.root))
    yield local


def create_app(settings: Settings) -> web.Application:
    async def build(parts: Parts) -> None:
        # each download holds a connection (its lock) while it runs
        pool = await parts.pool(
            settings.database_url,
            name="recordings",
            max_size=settings.concurrency + 10,
            ready=True,
        )
        parts.app[api.POOL] = pool
        storage = await parts.enter(open_storage(settings))
        parts.app[api.STORAGE] = storage
        timeout = aiohttp.ClientTimeout(
            total=None,  # a large recording may take a while; a stalled one may not
            sock_connect=settings.download_timeout_seconds,
            sock_read=settings.download_timeout_seconds,
        )
        http = await parts.enter(aiohttp.ClientSession(timeout=timeout))
        capture = RecordingCapture(
            pool,
            storage,
            RecordingDownloader(
                http,
                account_sid=settings.twilio_account_sid,
                auth_token=settings.twilio_auth_token,
                max_bytes=settings.max_bytes,
            ),
            settings.retry,
            spool_dir=settings.spool_dir,
        )
        broker, channel = await parts.broker(
            settings.amqp_url, name="recordings", prefetch=settings.concurrency
        )
        parts.relay(settings.database_url, pool, broker)
        parts.task(
            queue_depth.sample_forever(broker, [QUEUE, amqp.DEAD_LETTER_QUEUE]), name="queue-depth"
        )
        # belt and braces behind recordings.requests: reports whose message never came
        intake = intake_watchdog(pool, capture, grace_seconds=settings.intake_grace_seconds)
        parts.task(
            leader.run_as_leader(settings.database_url, "recordings-intake", intake.run),
            name="intake-watchdog",
        )
        # on stop: no more reports taken, and downloads in flight finish and are recorded; one
        # still unfinished after that is redelivered and starts over
        await parts.consume(
            channel,
            QUEUE,
            capture,
            permanent_errors=(UnexpectedEvent,),
            drain_seconds=DRAIN_SECONDS,
        )

    app = service_app(SERVICE, settings, build)
    api.setup_routes(app)
    return app


def main() -> None:
    run_service(SERVICE, Settings.from_env, create_app, shutdown_timeout=20)


if __name__ == "__main__":
    main()
