"""Composition root of the API gateway: builds every dependency and runs the service.

Besides the HTTP API, every gateway replica competes for the outbox-relay leadership, so the
events it appends reach RabbitMQ even if no other service is running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Mapping

import aiohttp
import structlog
from aiohttp import web
from calls_platform import amqp, queue_depth, topology
from calls_platform.db import is_reachable, open_pool
from calls_platform.http import new_app
from calls_platform.logging import configure_logging
from calls_platform.migrate import migrate_service
from calls_platform.publishing import RelayHealth
from calls_platform.relay import start_relay
from calls_platform.service import (
    DEFAULT_DATABASE_URL,
    amqp_url_from_env,
    run_command,
    serve,
    stop_tasks,
)
from pydantic import ValidationError
from twilio.request_validator import RequestValidator

from . import api_keys, inbox
from .app import auth_middleware, bad_request_middleware, setup_routes
from .auth import SCOPES, InvalidJwtConfig, JwtOptions, JwtVerifier
from .config import DEV_JWT_SECRET, Settings
from .context import (
    AUTH_POOL,
    CALL_LOG,
    POOL,
    RATE_LIMITER,
    RECORDINGS,
    SETTINGS,
    TWILIO_VALIDATORS,
    VERIFIER,
    WEBHOOKS,
)
from .models import CreateApiKey
from .ratelimit import Limit, RateLimiter

log = structlog.get_logger(__name__)


async def migrate(database_url: str, amqp_url: str | None = None) -> None:
    """The event store's and the gateway schema's migrations and, given `amqp_url`, the
    RabbitMQ topology (`python -m gateway migrate` does all three, with AMQP_URL)."""
    await migrate_service(database_url, "gateway", amqp_url=amqp_url)


def jwt_options(settings: Settings) -> JwtOptions:
    return JwtOptions(
        algorithm=settings.jwt_algorithm,
        secrets=(settings.jwt_secret, settings.jwt_previous_secret),
        public_key_pem=settings.jwt_public_key,
        jwks_json=settings.jwt_jwks,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        leeway_seconds=settings.jwt_leeway_seconds,
        organization_claim=settings.jwt_organization_claim,
    )


def create_app(settings: Settings) -> web.Application:
    broker_health = amqp.BrokerHealth()
    relay_health = RelayHealth()

    async def readiness() -> Mapping[str, bool]:
        return {
            "database": await is_reachable(app[POOL]),
            "broker": broker_health.connected,
            **relay_health.checks(),
        }

    app = new_app(
        readiness=readiness,
        reasons=relay_health.reasons,
        client_max_size=settings.max_body_bytes,
    )
    app.middlewares.extend([auth_middleware, bad_request_middleware])
    app[SETTINGS] = settings
    app[VERIFIER] = JwtVerifier(jwt_options(settings))
    # no token configured: no callback verifies (an empty key is one anybody can sign with)
    app[TWILIO_VALIDATORS] = tuple(
        RequestValidator(token)
        for token in (settings.twilio_auth_token, settings.twilio_previous_auth_token)
        if token
    )

    async def resources(app: web.Application) -> AsyncIterator[None]:
        if settings.jwt_secret == DEV_JWT_SECRET:
            log.warning("jwt_secret_is_the_development_default")
        if settings.migrate_on_start:
            await migrate(settings.database_url, settings.amqp_url)
        pool = await open_pool(settings.database_url, name="gateway", max_size=20)
        app[POOL] = pool
        auth_pool = await open_pool(settings.database_url, name="gateway-auth", max_size=4)
        app[AUTH_POOL] = auth_pool
        limiter_pool = await open_pool(
            settings.database_url,
            name="gateway-rate-limits",
            max_size=4,
            settings=RateLimiter.SESSION,
        )
        app[RATE_LIMITER] = RateLimiter(
            limiter_pool,
            organization=Limit(settings.rate_limit_org_per_second, settings.rate_limit_org_burst),
            api_key=Limit(settings.rate_limit_key_per_second, settings.rate_limit_key_burst),
        )
        app[CALL_LOG] = aiohttp.ClientSession(
            base_url=settings.call_log_url, timeout=aiohttp.ClientTimeout(total=10)
        )
        # no total timeout: a recording streams for as long as the client reads it
        app[RECORDINGS] = aiohttp.ClientSession(
            base_url=settings.recordings_url,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30),
            auto_decompress=False,
        )
        # a test message waits for the customer's endpoint (up to its delivery timeout)
        app[WEBHOOKS] = aiohttp.ClientSession(
            base_url=settings.webhooks_url, timeout=aiohttp.ClientTimeout(total=30)
        )
        broker = await amqp.connect(settings.amqp_url)
        broker_health.watch(broker)
        channel = await broker.channel()
        await channel.set_qos(prefetch_count=20)
        inbox_queue = await topology.declare_queue(channel, inbox.QUEUE)
        inbox_tag = await amqp.consume(
            inbox_queue, inbox.InboxHandler(pool), permanent_errors=(inbox.UnacceptableReport,)
        )
        tasks = [
            *start_relay(settings.database_url, pool, broker, health=relay_health),
            queue_depth.start_sampler(broker, [inbox.QUEUE, amqp.DEAD_LETTER_QUEUE]),
        ]
        yield
        await amqp.stop_consuming(inbox_queue, inbox_tag, drain_seconds=5)
        await stop_tasks(tasks)
        await channel.close()
        await broker.close()
        await app[CALL_LOG].close()
        await app[RECORDINGS].close()
        await app[WEBHOOKS].close()
        await limiter_pool.close()
        await auth_pool.close()
        await pool.close()

    app.cleanup_ctx.append(resources)
    setup_routes(app)
    return app


async def create_api_key(database_url: str, argv: list[str]) -> None:
    """`python -m gateway create-api-key --org ORG --name NAME [--scope S]…`: print the new key."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway create-api-key",
        description="Create an API key for an organization and print it (shown only once).",
    )
    parser.add_argument("--org", required=True, help="organization id")
    parser.add_argument("--name", required=True, help="what the key is for")
    parser.add_argument(
        "--scope",
        action="append",
        choices=sorted(SCOPES),
        help="repeat for several (default: every scope)",
    )
    args = parser.parse_args(argv)
    try:
        body = CreateApiKey(name=args.name, scopes=args.scope or sorted(SCOPES))
    except ValidationError as exc:
        raise SystemExit(f"invalid key: {exc}") from None
    pool = await open_pool(database_url, name="gateway-cli", max_size=1)
    async with pool, pool.connection() as conn:
        issued = await api_keys.issue(
            conn,
            organization_id=args.org,
            name=body.name,
            scopes=list(body.scopes),
            created_by="cli",
        )
    print(json.dumps(issued))


def main() -> None:
    if run_command(sys.argv[1:], {"migrate": lambda url: migrate(url, amqp_url_from_env())}):
        return
    if sys.argv[1:2] == ["create-api-key"]:
        database_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
        asyncio.run(create_api_key(database_url, sys.argv[2:]))
        return
    settings = Settings.from_env()
    configure_logging("api-gateway", json_logs=settings.json_logs, level=settings.log_level)
    try:
        app = create_app(settings)
    except InvalidJwtConfig as exc:
        raise SystemExit(f"api-gateway: {exc}") from None
    serve(app, host=settings.host, port=settings.port, shutdown_timeout=10)


if __name__ == "__main__":
    main()
