"""Composition root of the API gateway: builds every dependency and runs the service.

Besides the HTTP API, every gateway replica competes for the outbox-relay leadership, so the
events it appends reach RabbitMQ even if no other service is running.
"""

from __future__ import annotations

import argparse
import json

import aiohttp
import structlog
from aiohttp import web
from calls_platform import amqp, queue_depth
from calls_platform.db import open_pool
from calls_platform.service import Parts, Service, run_service, service_app
from pydantic import ValidationError
from twilio.request_validator import RequestValidator

from . import api_keys, inbox
from .app import auth_middleware, setup_routes
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


SERVICE = Service("api-gateway", schema="gateway")
migrate = SERVICE.migrate


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
    async def build(parts: Parts) -> None:
        if settings.jwt_secret == DEV_JWT_SECRET:
            log.warning("jwt_secret_is_the_development_default")
        url = settings.database_url
        pool = await parts.pool(url, name="gateway", max_size=20, ready=True)
        parts.app[POOL] = pool
        parts.app[AUTH_POOL] = await parts.pool(url, name="gateway-auth", max_size=4)
        limiter_pool = await parts.pool(
            url, name="gateway-rate-limits", max_size=4, settings=RateLimiter.SESSION
        )
        parts.app[RATE_LIMITER] = RateLimiter(
            limiter_pool,
            organization=Limit(settings.rate_limit_org_per_second, settings.rate_limit_org_burst),
            api_key=Limit(settings.rate_limit_key_per_second, settings.rate_limit_key_burst),
        )
        parts.app[CALL_LOG] = await parts.enter(
            aiohttp.ClientSession(
                base_url=settings.call_log_url, timeout=aiohttp.ClientTimeout(total=10)
            )
        )
        # no total timeout: a recording streams for as long as the client reads it
        parts.app[RECORDINGS] = await parts.enter(
            aiohttp.ClientSession(
                base_url=settings.recordings_url,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30),
                auto_decompress=False,
            )
        )
        # a test message waits for the customer's endpoint (up to its delivery timeout)
        parts.app[WEBHOOKS] = await parts.enter(
            aiohttp.ClientSession(
                base_url=settings.webhooks_url, timeout=aiohttp.ClientTimeout(total=30)
            )
        )
        broker, channel = await parts.broker(settings.amqp_url, prefetch=20)
        # every gateway replica is a relay candidate: the events it appends reach RabbitMQ
        # even if no other service runs
        parts.relay(url, pool, broker)
        parts.task(
            queue_depth.sample_forever(broker, [inbox.QUEUE, amqp.DEAD_LETTER_QUEUE]),
            name="queue-depth",
        )
        await parts.consume(
            channel,
            inbox.QUEUE,
            inbox.InboxHandler(pool),
            permanent_errors=(inbox.UnacceptableReport,),
            drain_seconds=5,
        )

    app = service_app(SERVICE, settings, build, client_max_size=settings.max_body_bytes)
    app.middlewares.append(auth_middleware)
    app[SETTINGS] = settings
    app[VERIFIER] = JwtVerifier(jwt_options(settings))
    # no token configured: no callback verifies (an empty key is one anybody can sign with)
    app[TWILIO_VALIDATORS] = tuple(
        RequestValidator(token)
        for token in (settings.twilio_auth_token, settings.twilio_previous_auth_token)
        if token
    )
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


def create_app_or_exit(settings: Settings) -> web.Application:
    try:
        return create_app(settings)
    except InvalidJwtConfig as exc:
        raise SystemExit(f"api-gateway: {exc}") from None


def main() -> None:
    run_service(
        SERVICE,
        Settings.from_env,
        create_app_or_exit,
        shutdown_timeout=10,
        commands={"create-api-key": create_api_key},
    )


if __name__ == "__main__":
    main()
