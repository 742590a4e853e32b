"""Composition root of the webhooks service: builds every dependency and runs the service.

Every replica takes stored events from its queue and turns them into deliveries, sends the
deliveries that are due (each leased to one replica at a time), and serves the internal API
the gateway proxies /webhook-endpoints to. It appends no events, so it runs no relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta

import aiohttp
import structlog
from aiohttp import web
from calls_platform import amqp, topology
from calls_platform.db import is_reachable, open_pool
from calls_platform.http import new_app
from calls_platform.logging import configure_logging
from calls_platform.migrate import migrate_service
from calls_platform.notify import Listener
from calls_platform.service import (
    DEFAULT_DATABASE_URL,
    amqp_url_from_env,
    run_command,
    serve,
    stop_tasks,
)

from . import admin, api, store
from .calllog import CallLog
from .config import Settings
from .intake import QUEUE, Intake
from .sender import Sender, watch_backlog
from .signing import SecretBox
from .urls import SafeResolver

log = structlog.get_logger(__name__)

DRAIN_SECONDS = 10.0


def utc_now() -> datetime:
    return datetime.now(UTC)


async def migrate(database_url: str, amqp_url: str | None = None) -> None:
    """The event store's and the webhooks schema's migrations and, given `amqp_url`, the
    RabbitMQ topology (`python -m webhooks migrate` does all three, with AMQP_URL)."""
    await migrate_service(database_url, "webhooks", amqp_url=amqp_url)


def create_app(settings: Settings) -> web.Application:
    broker_health = amqp.BrokerHealth()

    async def readiness() -> Mapping[str, bool]:
        pool = app[api.CONFIG].pool
        return {"database": await is_reachable(pool), "broker": broker_health.connected}

    app = new_app(readiness=readiness)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await migrate(settings.database_url, settings.amqp_url)
        if settings.uses_dev_key:
            log.warning("webhooks_encryption_key_is_the_development_default")
        if settings.allow_private:
            log.warning("webhooks_private_addresses_allowed")
        async with contextlib.AsyncExitStack() as stack:
            pool = await open_pool(
                settings.database_url, name="webhooks", max_size=settings.prefetch + 5
            )
            stack.push_async_callback(pool.close)
            resolver = SafeResolver(allow_private=settings.allow_private)
            sender_settings = settings.sender
            # deliveries: no redirects (per request), no connection reuse across hosts beyond
            # the limit, the resolver that refuses non-public addresses at connect time
            delivery_http = await stack.enter_async_context(
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(
                        resolver=resolver, limit=sender_settings.max_in_flight + 10
                    ),
                    timeout=aiohttp.ClientTimeout(
                        total=sender_settings.timeout_seconds,
                        sock_connect=sender_settings.connect_timeout_seconds,
                    ),
                )
            )
            call_log_http = await stack.enter_async_context(
                aiohttp.ClientSession(
                    base_url=settings.call_log_url, timeout=aiohttp.ClientTimeout(total=10)
                )
            )
            call_log = CallLog(call_log_http)
            box = SecretBox(settings.encryption_key, settings.previous_encryption_keys)
            app[api.CONFIG] = api.Config(
                pool=pool,
                box=box,
                resolver=resolver,
                allow_private=settings.allow_private,
                rotation_grace=timedelta(seconds=settings.rotation_grace_seconds),
                clock=utc_now,
                http=delivery_http,
                excerpt_bytes=sender_settings.excerpt_bytes,
            )
            listener = Listener(settings.database_url, store.NOTIFY_CHANNEL)
            sender = Sender(
                pool,
                delivery_http,
                box,
                call_log,
                sender_settings,
                wakeup=listener.subscribe(),
                clock=utc_now,
            )
            tasks = [
                asyncio.create_task(listener.run(), name="webhooks-listener"),
                asyncio.create_task(sender.run(), name="webhooks-sender"),
                asyncio.create_task(watch_backlog(pool, utc_now), name="webhooks-backlog"),
            ]
            stack.push_async_callback(stop_tasks, tasks)
            broker = await amqp.connect(settings.amqp_url, name="webhooks")
            stack.push_async_callback(broker.close)
            broker_health.watch(broker)
            channel = await broker.channel()
            stack.push_async_callback(channel.close)
            await channel.set_qos(prefetch_count=settings.prefetch)
            queue = await topology.declare_queue(channel, QUEUE)
            consumer_tag = await amqp.consume(queue, Intake(pool, call_log, utc_now))
            yield
            await amqp.stop_consuming(queue, consumer_tag, drain_seconds=DRAIN_SECONDS)

    app.cleanup_ctx.append(resources)
    api.setup_routes(app)
    return app


def main() -> None:
    if run_command(sys.argv[1:], {"migrate": lambda url: migrate(url, amqp_url_from_env())}):
        return
    if sys.argv[1:2] == ["admin"]:
        database_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
        asyncio.run(admin.run(database_url, sys.argv[2:]))
        return
    settings = Settings.from_env()
    configure_logging("webhooks", json_logs=settings.json_logs, level=settings.log_level)
    serve(create_app(settings), host=settings.host, port=settings.port, shutdown_timeout=20)


if __name__ == "__main__":
    main()
