"""Tenant isolation, proven against the whole system as real processes: for every endpoint,
two organizations and every kind of credential (none, malformed, expired, wrong secret,
unknown key, revoked key, read-only key, the other organization's JWT and key), the answer is
the expected 401/403/404, and no response to one organization carries a byte of the other's
data: not in lists, details, batches or recordings."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import psycopg
import pytest
from calls_testing import new_org_id, unique_number
from calls_testing.reads import read_json
from calls_testing.system import System

from tests.conftest import RECORDING_SECONDS

pytestmark = pytest.mark.integration


@dataclass
class Tenant:
    org: str
    jwt: dict[str, str]
    key: dict[str, str] = field(default_factory=dict)
    read_only_key: dict[str, str] = field(default_factory=dict)
    revoked_key: dict[str, str] = field(default_factory=dict)
    agent_id: str = ""
    call_id: str = ""
    call_sid: str = ""
    batch_id: str = ""
    webhook_endpoint_id: str = ""
    # strings that identify this tenant's data; none may appear in another tenant's answers
    secrets: set[str] = field(default_factory=set)

    def headers(self, credential: str) -> dict[str, str]:
        """The headers of this tenant's `credential`: its JWT ("jwt") or its API key ("key")."""
        return self.jwt if credential == "jwt" else self.key


async def _json(response: aiohttp.ClientResponse, status: int) -> Any:
    assert response.status == status, await response.text()
    return await response.json()


async def _key(http: aiohttp.ClientSession, gateway: str, t: Tenant, **body: Any) -> str:
    async with http.post(
        f"{gateway}/api-keys", json={"name": "matrix", **body}, headers=t.jwt
    ) as r:
        issued = await _json(r, 201)
    t.secrets |= {issued["id"], issued["key"], issued["prefix"]}
    return str(issued["key"])


async def _tenant(http: aiohttp.ClientSession, system: System) -> Tenant:
    gateway = system.gateway
    org = new_org_id()
    t = Tenant(org=org, jwt=system.auth(org))
    t.key = {"X-API-Key": await _key(http, gateway, t)}
    t.read_only_key = {"X-API-Key": await _key(http, gateway, t, scopes=["calls:read"])}
    revoked = await _key(http, gateway, t)
    t.revoked_key = {"X-API-Key": revoked}
    async with http.get(f"{gateway}/api-keys", headers=t.jwt) as r:
        revoked_id = next(
            k["id"] for k in (await _json(r, 200))["items"] if revoked.startswith(k["prefix"])
        )
    async with http.delete(f"{gateway}/api-keys/{revoked_id}", headers=t.jwt) as r:
        assert r.status == 204

    agent_number = unique_number()
    async with http.post(
        f"{gateway}/agents",
        json={"name": f"agent {org}", "phone_number": agent_number},
        headers=t.key,
    ) as r:
        t.agent_id = (await _json(r, 201))["id"]
    async with http.put(
        f"{gateway}/sip-config", json={"default_from_number": agent_number}, headers=t.key
    ) as r:
        await _json(r, 200)
    callee = unique_number()
    async with http.post(
        f"{gateway}/calls", json={"to_number": callee, "agent_id": t.agent_id}, headers=t.key
    ) as r:
        t.call_id = (await _json(r, 202))["call_id"]
    batch_numbers = [unique_number() for _ in range(2)]
    async with http.post(
        f"{gateway}/calls/batch", json={"to_numbers": batch_numbers}, headers=t.jwt
    ) as r:
        t.batch_id = (await _json(r, 202))["batch_id"]
    async with http.post(
        f"{gateway}/webhook-endpoints",
        # a type nothing in the matrix causes: no delivery is ever attempted
        json={"url": f"http://127.0.0.1:9/{org}", "events": ["batch.canceled"]},
        headers=t.jwt,
    ) as r:
        webhook = await _json(r, 201)
    t.webhook_endpoint_id = webhook["id"]
    t.secrets |= {org, t.agent_id, agent_number, callee, t.call_id, t.batch_id, *batch_numbers}
    t.secrets |= {t.webhook_endpoint_id, webhook["secret"]}
    return t


async def _wait_for_recording(http: aiohttp.ClientSession, system: System, t: Tenant) -> None:
    deadline = time.monotonic() + RECORDING_SECONDS
    while True:
        status, call = await read_json(http, f"{system.gateway}/calls/{t.call_id}", t.jwt)
        assert status == 200, call
        if call["recording_url"]:
            t.call_sid = call["call_sid"]
            t.secrets |= {call["call_sid"], call["recording_url"]}
            return
        assert time.monotonic() < deadline, f"no recording for {call}"
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
async def tenants(system: System) -> tuple[Tenant, Tenant]:
    async with aiohttp.ClientSession() as http:
        a, b = await _tenant(http, system), await _tenant(http, system)
        await asyncio.gather(
            _wait_for_recording(http, system, a), _wait_for_recording(http, system, b)
        )
    return a, b


def endpoints(t: Tenant) -> Iterator[tuple[str, str, Any]]:
    """(method, path, JSON body) for every public endpoint, naming `t`'s resources."""
    yield "GET", "/calls", None
    yield "GET", f"/calls?search={t.call_id[:8]}", None
    yield "GET", f"/calls/{t.call_id}", None
    yield "POST", "/calls", {"to_number": unique_number(), "agent_id": t.agent_id}
    yield "POST", f"/calls/{t.call_id}/conversation", {"transcript": []}
    yield "GET", f"/calls/{t.call_id}/recording", None
    yield "HEAD", f"/calls/{t.call_id}/recording", None
    yield "DELETE", f"/calls/{t.call_id}/recording", None
    yield "POST", "/calls/batch", {"to_numbers": [unique_number()], "agent_id": t.agent_id}
    yield "GET", f"/calls/batch/{t.batch_id}", None
    yield "POST", f"/calls/batch/{t.batch_id}/cancel", None
    yield "GET", "/agents", None
    yield "POST", "/agents", {"name": "x", "phone_number": unique_number()}
    yield "GET", "/sip-config", None
    yield "PUT", "/sip-config", {"default_from_number": unique_number()}
    yield "GET", "/api-keys", None
    yield "POST", "/api-keys", {"name": "x"}
    yield "DELETE", f"/api-keys/{uuid.uuid4()}", None
    hooks = f"/webhook-endpoints/{t.webhook_endpoint_id}"
    yield "GET", "/webhook-endpoints", None
    yield "POST", "/webhook-endpoints", {"url": "http://127.0.0.1:9/x", "events": ["call.ended"]}
    yield "GET", hooks, None
    yield "PATCH", hooks, {"enabled": False}
    yield "GET", f"{hooks}/deliveries", None
    yield "POST", f"{hooks}/deliveries/{uuid.uuid4()}/redeliver", None
    yield "POST", f"{hooks}/rotate-secret", None
    yield "POST", f"{hooks}/test", None
    yield "POST", f"{hooks}/replay", {"since": "2026-01-01T00:00:00Z"}
    yield "DELETE", hooks, None


ENDPOINTS = [(m, p) for m, p, _ in endpoints(Tenant(org="", jwt={}))]


CREDENTIALS = [
    "none",
    "malformed bearer",
    "expired jwt",
    "wrong secret",
    "alg none",
    "unknown key",
    "malformed key",
    "revoked key",
]


def _unauthenticated(system: System, a: Tenant, kind: str) -> dict[str, str]:
    now = int(time.time())
    secret = system.services["gateway"].env["JWT_SECRET"]
    claims = {"sub": "x", "org_id": a.org, "exp": now + 60}
    expired = jwt.encode({**claims, "exp": now - 3600}, secret, algorithm="HS256")
    forged = jwt.encode(claims, "not-our-secret-" + "x" * 40, algorithm="HS256")
    unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]  # "none" takes no key
    return {
        "none": {},
        "malformed bearer": {"Authorization": "Bearer not.a.jwt"},
        "expired jwt": {"Authorization": f"Bearer {expired}"},
        "wrong secret": {"Authorization": f"Bearer {forged}"},
        "alg none": {"Authorization": f"Bearer {unsigned}"},
        "unknown key": {"X-API-Key": "ck_" + "Z" * 43},
        "malformed key": {"X-API-Key": "sk_live_123"},
        "revoked key": a.revoked_key,
    }[kind]


async def _call(
    http: aiohttp.ClientSession, system: System, method: str, path: str, body: Any, headers: Any
) -> tuple[int, bytes]:
    async with http.request(
        method, f"{system.gateway}{path}", json=body, headers=headers
    ) as response:
        return response.status, await response.read()


async def _stream_lengths(system: System, *tenants: Tenant) -> dict[str, int]:
    """How many events each tenant's call and batch streams hold (the store is the truth)."""
    streams = [s for t in tenants for s in (f"call-{t.call_id}", t.batch_id)]
    async with await psycopg.AsyncConnection.connect(
        system.services["gateway"].env["DATABASE_URL"]
    ) as conn:
        cur = await conn.execute(
            "SELECT stream_id, count(*) FROM eventstore.events WHERE stream_id = ANY(%s)"
            " GROUP BY stream_id",
            (streams,),
        )
        return {row[0]: row[1] for row in await cur.fetchall()}


def _leaks(raw: bytes, owner: Tenant) -> list[str]:
    return [secret for secret in owner.secrets if secret.encode() in raw]


@pytest.mark.parametrize("credential", CREDENTIALS)
async def test_no_usable_credential_is_401_everywhere_and_changes_nothing(
    system: System, tenants: tuple[Tenant, Tenant], credential: str
) -> None:
    a, _ = tenants
    headers = _unauthenticated(system, a, credential)
    before = await _stream_lengths(system, a)
    async with aiohttp.ClientSession() as http:
        for method, path, body in endpoints(a):
            status, raw = await _call(http, system, method, path, body, headers)
            assert status == 401, (credential, method, path, raw)
            if method != "HEAD":
                assert raw.startswith(b'{"error"'), raw
                assert _leaks(raw, a) in ([], [a.org]), (method, path)
    assert await _stream_lengths(system, a) == before


# What another organization's credentials get when they name `a`'s resources. Collections
# answer 200 with the caller's own data; a reference inside a body that does not resolve is a
# 422 naming the field (the same as an id that exists nowhere).
OTHER_ORG: dict[tuple[str, str], tuple[int, int]] = {
    # (method, path kind): (status with the other org's JWT, status with its API key)
    ("GET", "/calls"): (200, 200),
    ("GET", "/calls?search"): (200, 200),
    ("GET", "/calls/{id}"): (404, 404),
    ("POST", "/calls"): (422, 422),
    ("POST", "/calls/{id}/conversation"): (404, 404),
    ("GET", "/calls/{id}/recording"): (404, 404),
    ("HEAD", "/calls/{id}/recording"): (404, 404),
    ("DELETE", "/calls/{id}/recording"): (404, 404),
    ("POST", "/calls/batch"): (422, 422),
    ("GET", "/calls/batch/{id}"): (404, 404),
    ("POST", "/calls/batch/{id}/cancel"): (404, 404),
    ("GET", "/agents"): (200, 200),
    ("POST", "/agents"): (201, 201),
    ("GET", "/sip-config"): (200, 200),
    ("PUT", "/sip-config"): (200, 200),
    ("GET", "/api-keys"): (200, 403),
    ("POST", "/api-keys"): (201, 403),
    ("DELETE", "/api-keys/{id}"): (404, 403),
    # webhook endpoints need webhooks:manage, which the tenants' keys were not given
    ("GET", "/webhook-endpoints"): (200, 403),
    ("POST", "/webhook-endpoints"): (201, 403),
    ("GET", "/webhook-endpoints/{id}"): (404, 403),
    ("PATCH", "/webhook-endpoints/{id}"): (404, 403),
    ("GET", "/webhook-endpoints/{id}/deliveries"): (404, 403),
    ("POST", "/webhook-endpoints/{id}/deliveries/{delivery}/redeliver"): (404, 403),
    ("POST", "/webhook-endpoints/{id}/rotate-secret"): (404, 403),
    ("POST", "/webhook-endpoints/{id}/test"): (404, 403),
    ("POST", "/webhook-endpoints/{id}/replay"): (404, 403),
    ("DELETE", "/webhook-endpoints/{id}"): (404, 403),
}


def _kind(a: Tenant, path: str) -> str:
    path = path.replace(a.call_id, "{id}").replace(a.batch_id, "{id}")
    path = path.replace(a.webhook_endpoint_id, "{id}")
    path = re.sub(r"/deliveries/[0-9a-f-]{36}/", "/deliveries/{delivery}/", path)
    if path.startswith("/calls?search"):
        return "/calls?search"
    if path.startswith("/api-keys/"):
        return "/api-keys/{id}"
    return path


def test_the_matrix_covers_every_endpoint() -> None:
    t = Tenant(
        org="o",
        jwt={},
        call_id=str(uuid.uuid4()),
        batch_id=f"batch-{uuid.uuid4().hex}",
        webhook_endpoint_id=str(uuid.uuid4()),
    )
    assert {(m, _kind(t, p)) for m, p, _ in endpoints(t)} == set(OTHER_ORG)


@pytest.mark.parametrize("credential", ["jwt", "key"])
async def test_another_organization_gets_404_and_not_a_byte_of_its_data(
    system: System, tenants: tuple[Tenant, Tenant], credential: str
) -> None:
    a, b = tenants
    before = await _stream_lengths(system, a)
    async with aiohttp.ClientSession() as http:
        for method, path, body in endpoints(a):
            expected = OTHER_ORG[(method, _kind(a, path))][0 if credential == "jwt" else 1]
            status, raw = await _call(http, system, method, path, body, b.headers(credential))
            assert status == expected, (credential, method, path, raw)
            assert _leaks(raw, a) == [], (credential, method, path, raw)
        # a's data is all still there and untouched
        assert await _stream_lengths(system, a) == before
        status, raw = await _call(http, system, "GET", f"/calls/{a.call_id}/recording", None, a.jwt)
        assert status == 200
        assert raw[:4] == b"RIFF"
        status, raw = await _call(http, system, "GET", f"/calls/batch/{a.batch_id}", None, a.key)
        assert status == 200
        assert b'"canceled": 0' in raw or b'"canceled":0' in raw


@pytest.mark.parametrize("credential", ["jwt", "key"])
async def test_own_credentials_see_own_data(
    system: System, tenants: tuple[Tenant, Tenant], credential: str
) -> None:
    """The control for the tests above: the same requests with a's own credentials succeed."""
    a, b = tenants
    headers = a.headers(credential)
    async with aiohttp.ClientSession() as http:
        for path in ("/calls", f"/calls/{a.call_id}", f"/calls/batch/{a.batch_id}", "/agents"):
            status, raw = await _call(http, system, "GET", path, None, headers)
            assert status == 200, (path, raw)
            assert a.call_id.encode() in raw or a.batch_id.encode() in raw or path == "/agents"
            assert _leaks(raw, b) == [], (path, raw)
        status, raw = await _call(
            http, system, "GET", f"/calls/{a.call_id}/recording", None, headers
        )
        assert status == 200
        assert raw[:4] == b"RIFF"


async def test_read_only_key_reads_but_every_write_is_403_and_appends_nothing(
    system: System, tenants: tuple[Tenant, Tenant]
) -> None:
    a, _ = tenants
    before = await _stream_lengths(system, a)
    async with aiohttp.ClientSession() as http:
        for method, path, body in endpoints(a):
            status, raw = await _call(http, system, method, path, body, a.read_only_key)
            if method in ("GET", "HEAD"):
                expected = 403 if path.startswith(("/api-keys", "/webhook-endpoints")) else 200
            else:
                expected = 403
            assert status == expected, (method, path, raw)
    assert await _stream_lengths(system, a) == before
