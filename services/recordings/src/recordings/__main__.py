"""Composition root of the recordings service: builds every dependency and runs the service.

Every replica consumes the carrier's recording reports from its own queue, downloads and
stores the audio (one replica per recording, by a lock), and serves the internal API the
gateway streams recordings through. Every replica also competes for the outbox-relay
leadership, as every service that appends events does.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web
from calls_platform import amqp, leader, queue_depth, topology
from calls_platform.db import is_reachable, open_pool
from calls_platform.http import new_app
from calls_platform.logging import configure_logging
from calls_platform.migrate import migrate_service
from calls_platform.publishing import RelayHealth
from calls_platform.relay import start_relay
from calls_platform.service import amqp_url_from_env, run_command, serve, stop_tasks

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


async def migrate(database_url: str, amqp_url: str | None = None) -> None:
    """The event store's and the recordings schema's migrations and, given `amqp_url`, the
    RabbitMQ topology (`python -m recordings migrate` does all three, with AMQP_URL)."""
    await migrate_service(database_url, "recordings", amqp_url=amqp_url)


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
    broker_health = amqp.BrokerHealth()
    relay_health = RelayHealth()

    async def readiness() -> Mapping[str, bool]:
        return {
            "database": await is_reachable(app[api.POOL]),
            "broker": broker_health.connected,
            **relay_health.checks(),
        }

    app = new_app(readiness=readiness, reasons=relay_health.reasons)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await migrate(settings.database_url, settings.amqp_url)
        async with contextlib.AsyncExitStack() as stack:
            # each download holds a connection (its lock) while it runs
            pool = await open_pool(
                settings.database_url, name="recordings", max_size=settings.concurrency + 10
            )
            stack.push_async_callback(pool.close)
            app[api.POOL] = pool
            storage = await stack.enter_async_context(open_storage(settings))
            app[api.STORAGE] = storage
            timeout = aiohttp.ClientTimeout(
                total=None,  # a large recording may take a while; a stalled one may not
                sock_connect=settings.download_timeout_seconds,
                sock_read=settings.download_timeout_seconds,
            )
            http = await stack.enter_async_context(aiohttp.ClientSession(timeout=timeout))
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
            broker = await amqp.connect(settings.amqp_url, name="recordings")
            stack.push_async_callback(broker.close)
            broker_health.watch(broker)
            channel = await broker.channel()
            stack.push_async_callback(channel.close)
            await channel.set_qos(prefetch_count=settings.concurrency)
            queue = await topology.declare_queue(channel, QUEUE)
            consumer_tag = await amqp.consume(queue, capture, permanent_errors=(UnexpectedEvent,))
            intake = intake_watchdog(pool, capture, grace_seconds=settings.intake_grace_seconds)
            tasks = [
                *start_relay(settings.database_url, pool, broker, health=relay_health),
                queue_depth.start_sampler(broker, [QUEUE, amqp.DEAD_LETTER_QUEUE]),
                # belt and braces behind recordings.requests: reports whose message never came
                asyncio.create_task(
                    leader.run_as_leader(settings.database_url, "recordings-intake", intake.run),
                    name="intake-watchdog",
                ),
            ]
            yield
            # stop taking reports and let downloads in flight finish and be recorded; one
            # still unfinished after that is redelivered and starts over
            await amqp.stop_consuming(queue, consumer_tag, drain_seconds=DRAIN_SECONDS)
            await stop_tasks(tasks)

    app.cleanup_ctx.append(resources)
    api.setup_routes(app)
    return app


def main() -> None:
    if run_command(sys.argv[1:], {"migrate": lambda url: migrate(url, amqp_url_from_env())}):
        return
    settings = Settings.from_env()
    configure_logging("recordings", json_logs=settings.json_logs, level=settings.log_level)
    serve(create_app(settings), host=settings.host, port=settings.port, shutdown_timeout=20)


if __name__ == "__main__":
    main()
