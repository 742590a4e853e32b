"""Integration: API keys are shown once, stored as a hash, scoped, revoked at once; write
requests are rate limited per organization and per key."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Gateway

pytestmark = pytest.mark.integration


async def create_key(gateway: Gateway, org: str, **body: Any) -> dict[str, Any]:
    response = await gateway.post_json("/api-keys", org, {"name": "ci", **body})
    assert response.status == 201, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    issued: dict[str, Any] = await response.json()
    return issued


def key_auth(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def test_created_key_is_shown_once_and_stored_only_as_a_hash(
    gateway: Gateway, org: str
) -> None:
    issued = await create_key(gateway, org, name="  nightly batch  ")
    assert issued["name"] == "nightly batch"
    assert issued["key"].startswith("ck_")
    assert len(issued["key"]) == 46
    assert issued["prefix"] == issued["key"][:11]
    assert issued["scopes"] == ["calls:read", "calls:write"]

    listed = await (await gateway.get("/api-keys", org)).json()
    assert listed == {
        "items": [
            {
                "id": issued["id"],
                "name": "nightly batch",
                "prefix": issued["prefix"],
                "scopes": ["calls:read", "calls:write"],
                "created_at": issued["created_at"],
                "last_used_at": None,
            }
        ]
    }
    async with gateway.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT * FROM gateway.api_keys WHERE organization_id = %s", (org,)
        )
        (row,) = await cur.fetchall()
    stored = json.dumps({k: str(v) for k, v in row.items()})
    assert issued["key"] not in stored
    assert bytes(row["key_hash"]) == hashlib.sha256(issued["key"].encode()).digest()


async def test_a_key_places_and_lists_calls_in_its_organization(
    gateway: Gateway, org: str, other_org: str
) -> None:
    issued = await create_key(gateway, org)
    caller = gateway.number()
    response = await gateway.client.post(
        "/calls",
        json={"to_number": gateway.number(), "from_number": caller},
        headers=key_auth(issued["key"]),
    )
    assert response.status == 202, await response.text()
    call_id = (await response.json())["call_id"]
    (event,) = await gateway.stream(f"call-{call_id}")
    assert event.organization_id == org

    listed = await (await gateway.client.get("/calls", headers=key_auth(issued["key"]))).json()
    assert [c["call_id"] for c in listed["items"]] == [call_id]
    # the same call, asked for by another organization's JWT: not there
    assert (await gateway.get(f"/calls/{call_id}", other_org)).status == 404
    keys = (await (await gateway.get("/api-keys", org)).json())["items"]
    assert keys[0]["last_used_at"] is not None


async def test_revoked_key_is_refused_on_the_next_request(gateway: Gateway, org: str) -> None:
    issued = await create_key(gateway, org)
    assert (await gateway.client.get("/calls", headers=key_auth(issued["key"]))).status == 200
    revoked = await gateway.client.delete(f"/api-keys/{issued['id']}", headers=gateway.auth(org))
    assert revoked.status == 204
    response = await gateway.client.get("/calls", headers=key_auth(issued["key"]))
    assert response.status == 401
    assert (await response.json())["error"]["message"] == "API key revoked"
    assert (await (await gateway.get("/api-keys", org)).json())["items"] == []
    again = await gateway.client.delete(f"/api-keys/{issued['id']}", headers=gateway.auth(org))
    assert again.status == 404


async def test_another_organization_cannot_see_or_revoke_a_key(
    gateway: Gateway, org: str, other_org: str
) -> None:
    issued = await create_key(gateway, org)
    assert (await (await gateway.get("/api-keys", other_org)).json())["items"] == []
    response = await gateway.client.delete(
        f"/api-keys/{issued['id']}", headers=gateway.auth(other_org)
    )
    assert response.status == 404
    assert (await gateway.client.get("/calls", headers=key_auth(issued["key"]))).status == 200


async def test_keys_are_managed_with_a_jwt_only(gateway: Gateway, org: str) -> None:
    issued = await create_key(gateway, org)
    for method, path in (
        ("POST", "/api-keys"),
        ("GET", "/api-keys"),
        ("DELETE", f"/api-keys/{issued['id']}"),
    ):
        response = await gateway.client.request(
            method, path, json={"name": "child"}, headers=key_auth(issued["key"])
        )
        assert response.status == 403, (method, path)
        assert "JWT" in (await response.json())["error"]["message"]
    assert len((await (await gateway.get("/api-keys", org)).json())["items"]) == 1


async def test_read_only_key_cannot_write_and_writes_nothing(gateway: Gateway, org: str) -> None:
    issued = await create_key(gateway, org, scopes=["calls:read"])
    head = await gateway.head()
    response = await gateway.client.post(
        "/calls",
        json={"to_number": gateway.number(), "from_number": gateway.number()},
        headers=key_auth(issued["key"]),
    )
    assert response.status == 403
    assert (await response.json())["error"] == {
        "code": "insufficient_scope",
        "message": "this API key lacks the calls:write scope",
    }
    assert await gateway.head() == head
    assert (await gateway.client.get("/calls", headers=key_auth(issued["key"]))).status == 200


async def test_write_only_key_cannot_read(gateway: Gateway, org: str) -> None:
    issued = await create_key(gateway, org, scopes=["calls:write"])
    response = await gateway.client.get("/calls", headers=key_auth(issued["key"]))
    assert response.status == 403
    assert "calls:read" in (await response.json())["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ok", "scopes": []}, "scopes"),
        ({"name": "ok", "scopes": ["calls:admin"]}, "scopes.0"),
        ({"name": "ok", "extra": 1}, "extra"),
    ],
)
async def test_bad_key_requests_are_422_and_create_nothing(
    gateway: Gateway, org: str, body: dict[str, Any], field: str
) -> None:
    response = await gateway.post_json("/api-keys", org, body)
    assert response.status == 422
    fields = [d["field"] for d in (await response.json())["error"]["details"]]
    assert field in fields
    assert (await (await gateway.get("/api-keys", org)).json())["items"] == []


async def test_both_credentials_at_once_are_refused(gateway: Gateway, org: str) -> None:
    issued = await create_key(gateway, org)
    response = await gateway.client.get(
        "/calls", headers={**gateway.auth(org), **key_auth(issued["key"])}
    )
    assert response.status == 401
    assert "not both" in (await response.json())["error"]["message"]


async def test_malformed_key_id_is_404(gateway: Gateway, org: str) -> None:
    response = await gateway.client.delete("/api-keys/not-a-uuid", headers=gateway.auth(org))
    assert response.status == 404


CLI = (sys.executable, "-m", "gateway", "create-api-key")


def test_operators_create_keys_from_the_command_line(gateway: Gateway, org: str) -> None:
    env = {**os.environ, "DATABASE_URL": gateway.settings.database_url}
    done = subprocess.run(
        [*CLI, "--org", org, "--name", "ops", "--scope", "calls:read"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    issued = json.loads(done.stdout)
    assert issued["key"].startswith("ck_")
    assert issued["scopes"] == ["calls:read"]
    refused = subprocess.run(
        [*CLI, "--org", org, "--name", " "],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "invalid key" in refused.stderr


# --- rate limits -----------------------------------------------------------------------------


@pytest.fixture
async def strict(gateway: Gateway) -> AsyncIterator[TestClient[Any, Any]]:
    """A second gateway on the same database with tiny write limits."""
    async with gateway.another(
        rate_limit_org_per_second=0.5,
        rate_limit_org_burst=5,
        rate_limit_key_per_second=0.5,
        rate_limit_key_burst=2,
    ) as client:
        yield client


async def post_agent(client: TestClient[Any, Any], headers: dict[str, str], n: str) -> Any:
    return await client.post("/agents", json={"name": "a", "phone_number": n}, headers=headers)


async def test_writes_past_the_key_burst_get_429_with_retry_after(
    gateway: Gateway, strict: TestClient[Any, Any], org: str
) -> None:
    issued = await create_key(gateway, org)
    statuses = [
        (await post_agent(strict, key_auth(issued["key"]), gateway.number())).status
        for _ in range(2)
    ]
    assert statuses == [201, 201]
    before = REGISTRY.get_sample_value("rate_limited_requests_total", {"scope": "api key"}) or 0
    limited = await post_agent(strict, key_auth(issued["key"]), gateway.number())
    assert limited.status == 429
    after = REGISTRY.get_sample_value("rate_limited_requests_total", {"scope": "api key"})
    assert after == before + 1
    assert 1 <= int(limited.headers["Retry-After"]) <= 2
    error = (await limited.json())["error"]
    assert error["code"] == "rate_limited"
    assert "api key" in error["message"]
    # reads are not metered
    assert (await strict.get("/agents", headers=key_auth(issued["key"]))).status == 200
    # the organization's own budget is not spent by the refused request: a JWT still writes
    assert (await post_agent(strict, gateway.auth(org), gateway.number())).status == 201


async def test_organization_limit_spans_every_credential(
    gateway: Gateway, strict: TestClient[Any, Any], org: str, other_org: str
) -> None:
    first, second = await create_key(gateway, org), await create_key(gateway, org)
    results = []
    for headers in [key_auth(first["key"])] * 2 + [key_auth(second["key"])] * 2:
        results.append((await post_agent(strict, headers, gateway.number())).status)
    results.append((await post_agent(strict, gateway.auth(org), gateway.number())).status)
    assert results == [201] * 5
    limited = await post_agent(strict, gateway.auth(org), gateway.number())
    assert limited.status == 429
    assert "organization" in (await limited.json())["error"]["message"]
    # another organization is not affected
    assert (await post_agent(strict, gateway.auth(other_org), gateway.number())).status == 201
    # and nothing was created by the refused request
    agents = await (await strict.get("/agents", headers=gateway.auth(org))).json()
    assert len(agents["items"]) == 5
