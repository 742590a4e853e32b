"""What every service's HTTP surface shares: JSON errors, request metrics, correlation ids,
and the operational routes /healthz, /readyz and /metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .logging import bind_correlation, new_correlation_id
from .metrics import HTTP_REQUEST_SECONDS

log = structlog.get_logger(__name__)

CORRELATION_HEADER = "X-Correlation-ID"
CORRELATION_KEY = web.RequestKey("correlation_id", str)

Readiness = Callable[[], Awaitable[Mapping[str, bool]]]
READINESS: web.AppKey[Readiness] = web.AppKey("readiness")
# why a check fails, where there is more to say than false (e.g. the relay holding an event)
Reasons = Callable[[], Mapping[str, str]]
READINESS_REASONS: web.AppKey[Reasons] = web.AppKey("readiness_reasons")


def json_error(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details:
        body["error"]["details"] = details
    return web.json_response(body, status=status, headers=headers)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error is a JSON body; no stack trace or internal detail ever leaves."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        code = _STATUS_CODES.get(exc.status, "error")
        message = (
            exc.reason if exc.text is None or exc.text.startswith(str(exc.status)) else exc.text
        )
        return json_error(
            exc.status,
            code,
            message,
            headers={k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")},
        )
    except Exception:
        log.exception("unhandled_error", path=request.path, method=request.method)
        return json_error(500, "internal_error", "internal error")


@web.middleware
async def observability_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    correlation_id = request.headers.get(CORRELATION_HEADER) or new_correlation_id()
    request[CORRELATION_KEY] = correlation_id[:128]
    started = time.perf_counter()
    status = 500
    with bind_correlation(request[CORRELATION_KEY]):
        try:
            response = await handler(request)
            status = response.status
            response.headers[CORRELATION_HEADER] = request[CORRELATION_KEY]
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            route = request.match_info.route.resource
            name = route.canonical if route is not None else "unmatched"
            HTTP_REQUEST_SECONDS.labels(request.method, name, str(status)).observe(
                time.perf_counter() - started
            )


def new_app(
    *, readiness: Readiness, reasons: Reasons | None = None, client_max_size: int = 1024**2
) -> web.Application:
    """An aiohttp application with the shared middlewares and operational routes. /readyz
    answers 503 while any `readiness` check is false, with `reasons` for those it explains."""
    app = web.Application(
        middlewares=[observability_middleware, error_middleware], client_max_size=client_max_size
    )
    app[READINESS] = readiness
    app[READINESS_REASONS] = reasons or dict
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    checks = dict(await request.app[READINESS]())
    ready = all(checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "checks": checks}
    reasons = {k: v for k, v in request.app[READINESS_REASONS]().items() if not checks.get(k)}
    if reasons:
        body["reasons"] = reasons
    return web.json_response(body, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
