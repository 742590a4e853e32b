"""Composition root of the API gateway: builds every dependency and runs the service.

Besides the HTTP API, every gateway replica competes for the outbox-relay leadership, so the
events it appends reach RabbitMQ even if no other service is running.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Mapping

import aiohttp
import structlog
from aiohttp import web
from calls_platform import amqp
from calls_platform.db import is_reachable, open_pool
from calls_platform.http import new_app
from calls_platform.logging import configure_logging
from calls_platform.migrate import apply_migrations, migrate_event_store
from calls_platform.relay import start_relay
from calls_platform.service import run_command, serve, stop_tasks
from twilio.request_validator import RequestValidator

from . import inbox
from .app import auth_middleware, bad_request_middleware, setup_routes
from .auth import JwtVerifier
from .config import DEV_JWT_SECRET, Settings
from .context import CALL_LOG, POOL, RECORDINGS, SETTINGS, TWILIO_VALIDATOR, VERIFIER

log = structlog.get_logger(__name__)


async def migrate(database_url: str) -> None:
    pool = await open_pool(database_url, name="gateway-migrate", max_size=1)
    async with pool, pool.connection() as conn:
        await migrate_event_store(conn)
        await apply_migrations(conn, "gateway", "gateway", "migrations")


def create_app(settings: Settings) -> web.Application:
    broker_health = amqp.BrokerHealth()

    async def readiness() -> Mapping[str, bool]:
        return {
            "database": await is_reachable(app[POOL]),
            "broker": broker_health.connected,
        }

    app = new_app(readiness=readiness, client_max_size=settings.max_body_bytes)
    app.middlewares.extend([auth_middleware, bad_request_middleware])
    app[SETTINGS] = settings
    app[VERIFIER] = JwtVerifier(settings.jwt_secret)
    app[TWILIO_VALIDATOR] = RequestValidator(settings.twilio_auth_token)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        if settings.jwt_secret == DEV_JWT_SECRET:
            log.warning("jwt_secret_is_the_development_default")
        if settings.migrate_on_start:
            await migrate(settings.database_url)
        pool = await open_pool(settings.database_url, name="gateway", max_size=20)
        app[POOL] = pool
        app[CALL_LOG] = aiohttp.ClientSession(
            base_url=settings.call_log_url, timeout=aiohttp.ClientTimeout(total=10)
        )
        # no total timeout: a recording streams for as long as the client reads it
        app[RECORDINGS] = aiohttp.ClientSession(
            base_url=settings.recordings_url,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30),
            auto_decompress=False,
        )
        broker = await amqp.connect(settings.amqp_url)
        broker_health.watch(broker)
        channel = await broker.channel()
        await channel.set_qos(prefetch_count=20)
        inbox_queue = await amqp.declare_consumer_queue(
            channel, inbox.QUEUE, inbox.EVENT_TYPES, exchange=amqp.INBOX_EXCHANGE
        )
        inbox_tag = await amqp.consume(
            inbox_queue, inbox.InboxHandler(pool), permanent_errors=(inbox.UnacceptableReport,)
        )
        tasks = start_relay(settings.database_url, pool, broker)
        yield
        await inbox_queue.cancel(inbox_tag)
        await stop_tasks(tasks)
        await channel.close()
        await broker.close()
        await app[CALL_LOG].close()
        await app[RECORDINGS].close()
        await pool.close()

    app.cleanup_ctx.append(resources)
    setup_routes(app)
    return app


def main() -> None:
    if run_command(sys.argv[1:], {"migrate": migrate}):
        return
    settings = Settings.from_env()
    configure_logging("api-gateway", json_logs=settings.json_logs, level=settings.log_level)
    serve(create_app(settings), host=settings.host, port=settings.port, shutdown_timeout=10)


if __name__ == "__main__":
    main()
