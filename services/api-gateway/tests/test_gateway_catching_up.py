"""When the call log's read-your-writes wait runs out (it is still recording events accepted a
moment ago), reads and batch commands answer 503 `catching_up` with Retry-After, never a 404
for something that may exist, and nothing is appended."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from gateway.schemas import Error

if TYPE_CHECKING:
    from conftest import Gateway

pytestmark = pytest.mark.integration


async def _behind(request: web.Request) -> web.Response:
    """The call log's answer while its projection is behind (call_log.api)."""
    return web.json_response(
        {"error": {"code": "catching_up", "message": "still recording"}},
        status=503,
        headers={"Retry-After": "1"},
    )


@pytest.fixture
async def behind_call_log(gateway: Gateway) -> AsyncIterator[TestClient[Any, Any]]:
    """A second gateway in front of a call log that is always catching up."""
    fake = web.Application()
    fake.router.add_get("/{tail:.*}", _behind)
    call_log = TestServer(fake, host="127.0.0.1", port=0)
    await call_log.start_server()
    try:
        async with gateway.another(call_log_url=str(call_log.make_url("")).rstrip("/")) as client:
            yield client
    finally:
        await call_log.close()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/calls/{call_id}"),
        ("GET", "/calls/batch/batch-{hex}"),
        ("POST", "/calls/batch/batch-{hex}/cancel"),
        ("POST", "/calls/batch/batch-{hex}/pause"),
        ("POST", "/calls/batch/batch-{hex}/resume"),
    ],
)
async def test_a_call_log_still_catching_up_is_a_503_to_retry(
    gateway: Gateway,
    behind_call_log: TestClient[Any, Any],
    org: str,
    method: str,
    path: str,
) -> None:
    head = await gateway.head()
    url = path.format(call_id=uuid.uuid4(), hex=uuid.uuid4().hex)

    response = await behind_call_log.request(method, url, headers=gateway.auth(org))

    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    body = await response.json()
    Error.model_validate(body)
    assert body["error"]["code"] == "catching_up"
    assert await gateway.events_after(head) == []
