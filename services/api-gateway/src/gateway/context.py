"""Typed keys for what the composition root puts on the app and the auth middleware on requests."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from calls_platform.db import Pool
from twilio.request_validator import RequestValidator

from .auth import JwtVerifier, Principal
from .config import Settings
from .ratelimit import RateLimiter

POOL: web.AppKey[Pool] = web.AppKey("pool")
# A few connections of their own for API-key lookups and rate limits, so authenticating a
# request never queues behind handlers that hold connections while they wait to append.
AUTH_POOL: web.AppKey[Pool] = web.AppKey("auth_pool")
SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
VERIFIER: web.AppKey[JwtVerifier] = web.AppKey("jwt_verifier")
CALL_LOG: web.AppKey[aiohttp.ClientSession] = web.AppKey("call_log_client")
RECORDINGS: web.AppKey[aiohttp.ClientSession] = web.AppKey("recordings_client")
WEBHOOKS: web.AppKey[aiohttp.ClientSession] = web.AppKey("webhooks_client")
# the current auth token first, then the previous one while a rotation is under way
TWILIO_VALIDATORS: web.AppKey[tuple[RequestValidator, ...]] = web.AppKey("twilio_validators")
RATE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("rate_limiter")

PRINCIPAL = web.RequestKey("principal", Principal)


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]
