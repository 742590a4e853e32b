"""Unit: log lines never carry credentials, whether under a telling key or inside a value."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog
from calls_platform.logging import configure_logging

API_KEY = "ck_" + "a1B2c3D4e5" * 4 + "xyz"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl"


def configured(json_logs: bool) -> io.StringIO:
    """The services' logging set-up, writing into a buffer instead of stderr."""
    configure_logging("test", json_logs=json_logs)
    out = io.StringIO()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=out))
    return out


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    yield configured(json_logs=True)
    structlog.reset_defaults()


def logged(out: io.StringIO) -> dict[str, object]:
    record: dict[str, object] = json.loads(out.getvalue().strip().splitlines()[-1])
    return record


def test_values_under_credential_keys_are_redacted(
    json_lines: io.StringIO,
) -> None:
    structlog.get_logger().info(
        "request", authorization=f"Bearer {JWT}", api_key=API_KEY, password="hunter2", path="/x"
    )
    record = logged(json_lines)
    assert record["authorization"] == "[redacted]"
    assert record["api_key"] == "[redacted]"
    assert record["password"] == "[redacted]"
    assert record["path"] == "/x"


def test_credentials_inside_values_and_nested_headers_are_redacted(
    json_lines: io.StringIO,
) -> None:
    structlog.get_logger().warning(
        "upstream_failed",
        detail=f"refused key {API_KEY} for token {JWT}",
        headers={"X-API-Key": API_KEY, "Accept": "application/json"},
        url="amqp://guest:s3cret@rabbit:5672/",
        attempts=[f"Bearer {JWT}"],
    )
    record = logged(json_lines)
    text = json.dumps(record)
    for secret in (API_KEY, JWT, "s3cret"):
        assert secret not in text
    assert record["headers"] == {"X-API-Key": "[redacted]", "Accept": "application/json"}
    assert record["url"] == "amqp://[redacted]@rabbit:5672/"


def test_exception_text_is_scrubbed_too(json_lines: io.StringIO) -> None:
    try:
        raise ValueError(f"bad credential {API_KEY}")
    except ValueError:
        structlog.get_logger().exception("failed")
    text = json.dumps(logged(json_lines))
    assert "ValueError" in text
    assert API_KEY not in text


def test_console_logs_still_render_exceptions() -> None:
    out = configured(json_logs=False)
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            structlog.get_logger().exception("failed", token=JWT)
        err = out.getvalue()
    finally:
        structlog.reset_defaults()
    assert "RuntimeError: boom" in err
    assert JWT not in err
