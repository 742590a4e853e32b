"""What every service's HTTP surface shares: JSON errors, request bodies validated into
models (and every way that can fail as a 4xx), request metrics, correlation ids, and the
operational routes /healthz, /readyz and /metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import structlog
from aiohttp import web
from calls_events import E164
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .logging import bind_correlation, new_correlation_id
from .metrics import HTTP_REQUEST_SECONDS

log = structlog.get_logger(__name__)

CORRELATION_HEADER = "X-Correlation-ID"
CORRELATION_KEY = web.RequestKey("correlation_id", str)

M = TypeVar("M", bound=BaseModel)

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


class BadRequest(Exception):
    """Carries the JSON error response to send (error_middleware sends it)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


def _message(err: ErrorDetails) -> str:
    if err["type"] == "string_pattern_mismatch" and (err.get("ctx") or {}).get("pattern") == E164:
        return "must be an E.164 phone number, e.g. +14155550100"
    return err["msg"]


def validation_details(exc: ValidationError, *, values: bool = True) -> list[dict[str, Any]]:
    """What is wrong, one detail a field: where (`field`), why (`message`) and, where it is a
    scalar and `values`, what was sent (`value`)."""
    details = []
    for err in exc.errors(include_url=False):
        detail: dict[str, Any] = {
            "field": ".".join(str(p) for p in err["loc"]) or "body",
            "message": _message(err),
        }
        if (
            values
            and err["type"] not in ("missing", "extra_forbidden")
            and isinstance(err.get("input"), str | int | float | bool)
        ):
            detail["value"] = err["input"]
        details.append(detail)
    return details


def unprocessable(message: str, field: str, detail: str) -> BadRequest:
    """A 422 about one field."""
    return BadRequest(
        json_error(422, "validation_error", message, [{"field": field, "message": detail}])
    )


def invalid(
    exc: ValidationError, message: str = "invalid request body", *, values: bool = True
) -> BadRequest:
    """A 422 with a detail for each field `exc` found wrong (see `validation_details`)."""
    return BadRequest(
        json_error(422, "validation_error", message, validation_details(exc, values=values))
    )


def _path_to_nul(document: Any) -> str | None:
    """Where in a decoded JSON document a string (or an object key) holds a NUL character.
    Iterative: a document nested as deep as the decoder allows must not overflow the stack."""
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return path or "body"
        elif isinstance(value, dict):
            for key, item in value.items():
                here = f"{path}.{key}" if path else str(key)
                if "\x00" in key:
                    return here.replace("\x00", "\\u0000")
                stack.append((here, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}" if path else str(i), item) for i, item in enumerate(value))
    return None


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The request's JSON body as `model`; raises BadRequest with the 4xx that says why it is
    not one (415 not JSON, 400 malformed, 413 too large, 422 not an object, a NUL, invalid)."""
    if request.content_type != "application/json":
        raise BadRequest(
            json_error(415, "unsupported_media_type", "Content-Type must be application/json")
        )
    raw = await request.read()  # aiohttp answers 413 past client_max_size
    try:
        data = json.loads(raw)
    except ValueError as exc:  # bad syntax, bad UTF-8, or an integer past int_max_str_digits
        raise BadRequest(
            json_error(400, "malformed_json", f"body is not valid JSON: {exc}")
        ) from None
    except RecursionError:  # the decoder recurses per nesting level: "[[[[…" must not be a 500
        raise BadRequest(json_error(400, "malformed_json", "body is nested too deeply")) from None
    if not isinstance(data, dict):
        raise unprocessable("body must be a JSON object", "body", "must be a JSON object")
    nul = _path_to_nul(data)
    if nul is not None:  # PostgreSQL stores no NUL in text or jsonb: refuse it here, not with a 500
        raise unprocessable("invalid request body", nul, "must not contain NUL (U+0000)")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc) from None


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
    except BadRequest as exc:
        return exc.response
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
