"""structlog set-up: JSON lines in production, readable console output in development.

Every log line carries the correlation id of the request or event being handled, and values
that look like credentials are redacted.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import uuid
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = frozenset(
    {
        "authorization",
        "x-api-key",
        "x_api_key",
        "api_key",
        "token",
        "jwt",
        "password",
        "auth_token",
        "secret",
        "x-twilio-signature",
    }
)
# Credentials that end up inside a value (an exception message, a URL, a header dump): API keys,
# Bearer tokens and bare JWTs, and passwords in URLs.
_SECRET_VALUES = re.compile(
    r"ck_[A-Za-z0-9]{43}"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]+"
    r"|eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
    r"|(?<=://)[^/@:\s]+:[^/@\s]+(?=@)"
)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _SECRET_VALUES.sub("[redacted]", value)
    if isinstance(value, Mapping):
        return {
            k: "[redacted]" if str(k).lower() in _SECRET_KEYS else _scrub(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "[redacted]"
        elif key != "exc_info":  # the renderer formats it; scrubbing it would break that
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def configure_logging(service: str, *, json_logs: bool, level: str = "INFO") -> None:
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if json_logs:
        processors += [structlog.processors.dict_tracebacks]
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    # last before rendering, so exception text (dict_tracebacks) is scrubbed too
    processors.append(_redact)
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # libraries that use stdlib logging (aiohttp access log, aio-pika) go to stderr too
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(message)s")


def new_correlation_id() -> str:
    return uuid.uuid4().hex


@contextlib.contextmanager
def bind_correlation(correlation_id: str | None) -> Iterator[None]:
    """Bind `correlation_id` to every log line written inside the block."""
    with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
        yield
