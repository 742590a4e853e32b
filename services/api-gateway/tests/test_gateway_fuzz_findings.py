"""What fuzzing the served OpenAPI document found (tests/test_e2e_fuzz_gateway.py), each kept
as a plain regression test: the answers are now documented 4xx/502s, never 500s."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient
from gateway.schemas import Error

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Gateway

pytestmark = pytest.mark.integration


async def _error(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    Error.model_validate(body)  # the documented error shape
    return body


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/agents", {"name": "A\u0000a", "phone_number": "+14155550100"}, "name"),
        (
            "/calls/{call_id}/conversation",
            {"transcript": [{"role": "agent", "content": "hi\u0000"}]},
            "transcript.0.content",
        ),
        (
            "/calls/{call_id}/conversation",
            {"provider_usage": {"open\u0000ai": {"type": "llm", "model": "m"}}},
            "provider_usage.open\\u0000ai",
        ),
    ],
    ids=["agent name", "transcript", "object key"],
)
async def test_a_nul_character_anywhere_in_a_body_is_a_422_naming_where(
    gateway: Gateway, org: str, path: str, body: dict[str, Any], field: str
) -> None:
    # PostgreSQL cannot store NUL in text or jsonb: this used to fail in the INSERT, a 500
    response = await gateway.post_json(path.format(call_id=uuid.uuid4()), org, body)
    error = await _error(response)

    assert response.status == 422
    assert error["error"]["details"] == [
        {"field": field, "message": "must not contain NUL (U+0000)"}
    ]


async def test_an_empty_provider_name_in_a_conversation_report_is_a_422(
    gateway: Gateway, org: str
) -> None:
    # the body model took any key; the event it becomes does not: that was a 500
    response = await gateway.post_json(
        f"/calls/{uuid.uuid4()}/conversation",
        org,
        {"provider_usage": {"": {"type": "llm", "model": "gpt-4o"}}},
    )
    error = await _error(response)

    assert response.status == 422
    assert error["error"]["details"][0]["field"].startswith("provider_usage")


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"search": "41\u000055"}, "search"),
        ({"to": "50"}, "to"),  # pydantic would have read a Unix timestamp
        ({"from": "2025-01-31"}, "from"),
        ({"from": "2025-01-31T09:00:00"}, "from"),  # no offset: which time zone?
    ],
    ids=["NUL in search", "number as to", "date as from", "no offset"],
)
async def test_list_parameters_the_document_does_not_allow_are_a_422(
    gateway: Gateway, org: str, query: dict[str, str], parameter: str
) -> None:
    response = await gateway.client.get("/calls", params=query, headers=gateway.auth(org))
    error = await _error(response)

    assert response.status == 422
    assert [d["field"] for d in error["error"]["details"]] == [parameter]


async def test_list_takes_an_iso_date_time_with_an_offset(gateway: Gateway, org: str) -> None:
    response = await gateway.client.get(
        "/calls",
        params={"from": "2025-01-31T09:00:00Z", "to": "2025-02-01T09:00:00+02:00"},
        headers=gateway.auth(org),
    )

    assert response.status == 200, await response.text()
    assert (await response.json())["total"] == 0


@pytest.fixture
async def without_call_log(gateway: Gateway) -> AsyncIterator[TestClient[Any, Any]]:
    """A second gateway whose call log address refuses connections."""
    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))
    try:
        async with gateway.another(
            call_log_url=f"http://127.0.0.1:{refusing.getsockname()[1]}"
        ) as client:
            yield client
    finally:
        refusing.close()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/calls"),
        ("GET", "/calls/{call_id}"),
        ("GET", "/calls/batch/batch-{hex}"),
        ("POST", "/calls/batch/batch-{hex}/cancel"),
    ],
)
async def test_reads_with_the_call_log_down_are_a_502_not_a_500(
    gateway: Gateway, without_call_log: TestClient[Any, Any], org: str, method: str, path: str
) -> None:
    url = path.format(call_id=uuid.uuid4(), hex=uuid.uuid4().hex)
    response = await without_call_log.request(method, url, headers=gateway.auth(org))
    error = await _error(response)

    assert response.status == 502
    assert error["error"]["message"] == "call log unavailable"
