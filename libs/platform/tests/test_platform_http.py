"""The HTTP plumbing every service shares: operational routes and JSON errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from calls_platform.http import CORRELATION_HEADER, new_app


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
