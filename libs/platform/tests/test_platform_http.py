"""The HTTP plumbing every service shares: operational routes and JSON errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from calls_events import E164
from calls_platform.http import (
    CORRELATION_HEADER,
    new_app,
    parse_body,
    unprocessable,
    validation_details,
)
from calls_platform.publishing import RelayHealth, Unroutable
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError


class Checks:
    """Readiness checks the test can flip."""

    def __init__(self) -> None:
        self.values = {"database": True, "broker": True}

    async def __call__(self) -> Mapping[str, bool]:
        return self.values


async def explode(request: web.Request) -> web.Response:
    raise RuntimeError("secret detail: password=hunter2")


async def conflict(request: web.Request) -> web.Response:
    raise web.HTTPConflict(text="call already ended")


@pytest.fixture
def checks() -> Checks:
    return Checks()


@pytest.fixture
async def client(checks: Checks) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = new_app(readiness=checks)
    app.router.add_get("/explode", explode)
    app.router.add_post("/conflict", conflict)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_healthz_is_ok(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/healthz")

    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_is_200_when_every_check_passes(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/readyz")

    assert response.status == 200
    assert await response.json() == {
        "status": "ready",
        "checks": {"database": True, "broker": True},
    }


async def test_readyz_is_503_when_a_check_fails(
    client: TestClient[web.Request, web.Application], checks: Checks
) -> None:
    checks.values["broker"] = False

    response = await client.get("/readyz")

    assert response.status == 503
    assert await response.json() == {
        "status": "not_ready",
        "checks": {"database": True, "broker": False},
    }


async def test_readyz_says_why_the_relay_holds_an_unroutable_event() -> None:
    """The relay's health, registered as a composition root does: false with its reason while
    it holds an event, ready again once the event is routed."""
    health = RelayHealth()

    async def readiness() -> Mapping[str, bool]:
        return {"database": True, **health.checks()}

    app = new_app(readiness=readiness, reasons=health.reasons)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/readyz")).status == 200
        held = Unroutable(
            position=42,
            event_type="CallRequested",
            event_id="6f1c0000-0000-0000-0000-000000000000",
            reply="NO_ROUTE",
            since=datetime(2026, 12, 1, tzinfo=UTC),
        )
        health.hold(held)
        response = await client.get("/readyz")
        body = await response.json()
        assert response.status == 503
        assert body["checks"] == {"database": True, "relay_routing": False}
        assert body["reasons"] == {"relay_routing": held.describe()}
        assert "position 42 (CallRequested" in body["reasons"]["relay_routing"]

        health.clear()
        response = await client.get("/readyz")
        assert response.status == 200
        assert "reasons" not in await response.json()


async def test_unhandled_exception_is_a_500_json_body_without_details(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/explode")

    assert response.status == 500
    assert response.content_type == "application/json"
    body = await response.text()
    assert "Traceback" not in body
    assert "hunter2" not in body
    assert await response.json() == {
        "error": {"code": "internal_error", "message": "internal error"}
    }


async def test_unknown_route_is_a_404_json_body(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/no/such/route")

    assert response.status == 404
    assert await response.json() == {"error": {"code": "not_found", "message": "Not Found"}}


async def test_wrong_method_is_a_405_json_body_with_allow(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/conflict")

    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_http_exception_text_becomes_the_error_message(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.post("/conflict")

    assert response.status == 409
    assert await response.json() == {"error": {"code": "conflict", "message": "call already ended"}}


async def test_correlation_id_is_echoed_or_made_up(
    client: TestClient[web.Request, web.Application],
) -> None:
    given = await client.get("/healthz", headers={CORRELATION_HEADER: "corr-123"})
    made_up = await client.get("/healthz")

    assert given.headers[CORRELATION_HEADER] == "corr-123"
    assert len(made_up.headers[CORRELATION_HEADER]) == 32


async def test_metrics_are_exposed(client: TestClient[web.Request, web.Application]) -> None:
    await client.get("/healthz")

    response = await client.get("/metrics")

    assert response.status == 200
    assert 'http_request_duration_seconds_count{method="GET",route="/healthz"' in (
        await response.text()
    )


class Greeting(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: Annotated[str, StringConstraints(pattern=E164)]
    times: int = 1


async def greet(request: web.Request) -> web.Response:
    body = await parse_body(request, Greeting)
    if body.times > 3:
        raise unprocessable("too many", "times", "at most 3")
    return web.json_response(body.model_dump())


@pytest.fixture
async def greeter() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = new_app(readiness=Checks())
    app.router.add_post("/greet", greet)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.mark.parametrize(
    ("send", "status", "error"),
    [
        (
            {"data": b'{"to": "+14155550100"}', "headers": {"Content-Type": "text/plain"}},
            415,
            {"code": "unsupported_media_type", "message": "Content-Type must be application/json"},
        ),
        (
            {"data": b"[[[", "headers": {"Content-Type": "application/json"}},
            400,
            {"code": "malformed_json"},
        ),
        (
            {"json": [1]},
            422,
            {
                "code": "validation_error",
                "message": "body must be a JSON object",
                "details": [{"field": "body", "message": "must be a JSON object"}],
            },
        ),
        (
            {"json": {"to": "+1415\x005550100"}},
            422,
            {
                "code": "validation_error",
                "message": "invalid request body",
                "details": [{"field": "to", "message": "must not contain NUL (U+0000)"}],
            },
        ),
        (
            {"json": {"to": "0123"}},
            422,
            {
                "code": "validation_error",
                "message": "invalid request body",
                "details": [
                    {
                        "field": "to",
                        "message": "must be an E.164 phone number, e.g. +14155550100",
                        "value": "0123",
                    }
                ],
            },
        ),
        (
            {"json": {"to": "+14155550100", "times": 4}},
            422,
            {
                "code": "validation_error",
                "message": "too many",
                "details": [{"field": "times", "message": "at most 3"}],
            },
        ),
    ],
    ids=["not-json", "malformed", "not-an-object", "nul", "invalid", "unprocessable"],
)
async def test_a_body_that_is_not_the_model_is_a_json_4xx_saying_why(
    greeter: TestClient[web.Request, web.Application],
    send: dict[str, Any],
    status: int,
    error: dict[str, Any],
) -> None:
    resp = await greeter.post("/greet", **send)
    assert resp.status == status
    got = (await resp.json())["error"]
    assert {key: got[key] for key in error} == error


async def test_a_body_that_is_the_model_is_handed_over(
    greeter: TestClient[web.Request, web.Application],
) -> None:
    resp = await greeter.post("/greet", json={"to": "+14155550100"})
    assert resp.status == 200
    assert await resp.json() == {"to": "+14155550100", "times": 1}


def test_validation_details_leave_the_values_out_when_asked() -> None:
    with pytest.raises(ValidationError) as caught:
        Greeting.model_validate({"to": "+14155550100", "times": "many"})
    assert validation_details(caught.value)[0]["value"] == "many"
    assert validation_details(caught.value, values=False) == [
        {"field": "times", "message": caught.value.errors()[0]["msg"]}
    ]
