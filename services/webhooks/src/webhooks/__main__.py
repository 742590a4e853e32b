"""Composition root of the webhooks service: builds every dependency and runs the service.

Every replica takes stored events from its queue and turns them into deliveries, sends the
deliveries that are due (each leased to one replica at a time), runs replays (leased too),
deletes finished deliveries older than the retention, and serves the internal API the gateway
proxies /webhook-endpoints to. It appends no events, so it runs no relay.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import structlog
from aiohttp import web
from calls_platform.notify import Listener
from calls_platform.service import Parts, Service, run_service, service_app

from . import admin, api, store
from .calllog import CallLog
from .config import Settings
from .intake import QUEUE, Intake
from .replays import Replayer
from .retention import Retention
from .sender import Sender, watch_backlog
from .signing import SecretBox
from .urls import SafeResolver

log = structlog.get_logger(__name__)

DRAIN_SECONDS = 10.0


def utc_now() -> datetime:
    return datetime.now(UTC)


SERVICE = Service("webhooks", schema="webhooks")
migrate = SERVICE.migrate


def create_app(settings: Settings) -> web.Application:
    async def build(parts: Parts) -> None:
        if settings.uses_dev_key:
            log.warning("webhooks_encryption_key_is_the_development_default")
        if settings.allow_private:
            log.warning("webhooks_private_addresses_allowed")
        pool = await parts.pool(
            settings.database_url, name="webhooks", max_size=settings.prefetch + 5, ready=True
        )
        resolver = SafeResolver(allow_private=settings.allow_private)
        sender_settings = settings.sender
        # deliveries: no redirects (per request), no connection reuse across hosts beyond
        # the limit, the resolver that refuses non-public addresses at connect time
        delivery_http = await parts.enter(
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
        call_log_http = await parts.enter(
            aiohttp.ClientSession(
                base_url=settings.call_log_url, timeout=aiohttp.ClientTimeout(total=10)
            )
        )
        call_log = CallLog(call_log_http)
        box = SecretBox(settings.encryption_key, settings.previous_encryption_keys)
        parts.app[api.CONFIG] = api.Config(
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
        parts.task(listener.run(), name="webhooks-listener")
        parts.task(sender.run(), name="webhooks-sender")
        parts.task(watch_backlog(pool, utc_now), name="webhooks-backlog")
        retention = Retention(
            pool, keep=timedelta(days=settings.delivery_retention_days), clock=utc_now
        )
        parts.task(retention.run(), name="webhooks-retention")
        parts.task(Replayer(pool, utc_now).run(), name="webhooks-replays")
        _, channel = await parts.broker(
            settings.amqp_url, name="webhooks", prefetch=settings.prefetch
        )
        await parts.consume(
            channel, QUEUE, Intake(pool, call_log, utc_now), drain_seconds=DRAIN_SECONDS
        )

    app = service_app(SERVICE, settings, build)
    api.setup_routes(app)
    return app


def main() -> None:
    run_service(
        SERVICE,
        Settings.from_env,
        create_app,
        shutdown_timeout=20,
        commands={"admin": admin.run},
    )


if __name__ == "__main__":
    main()
