"""Integration: every route but the probes, the API docs and the carrier webhooks needs a valid
Bearer token or API key."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import jwt
import pytest

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Gateway

pytestmark = pytest.mark.integration

CALL_ID = str(uuid.uuid4())
BATCH_ID = f"batch-{uuid.uuid4().hex}"

# every protected route, as registered: "METHOD route"
PROTECTED_ROUTES = """
POST /api-keys
GET /api-keys
DELETE /api-keys/{key_id}
POST /agents
GET /agents
PUT /sip-config
GET /sip-config
POST /calls/batch
GET /calls/batch/{batch_id}
POST /calls/batch/{batch_id}/cancel
POST /calls/batch/{batch_id}/pause
POST /calls/batch/{batch_id}/resume
PUT /do-not-call/{number}
DELETE /do-not-call/{number}
GET /do-not-call
PUT /calling-policy
GET /calling-policy
POST /calls
GET /calls
GET /calls/{call_id}
POST /calls/{call_id}/conversation
GET /calls/{call_id}/recording
DELETE /calls/{call_id}/recording
POST /webhook-endpoints
GET /webhook-endpoints
GET /webhook-endpoints/{endpoint_id}
PATCH /webhook-endpoints/{endpoint_id}
DELETE /webhook-endpoints/{endpoint_id}
POST /webhook-endpoints/{endpoint_id}/rotate-secret
POST /webhook-endpoints/{endpoint_id}/test
GET /webhook-endpoints/{endpoint_id}/deliveries
POST /webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/redeliver
POST /webhook-endpoints/{endpoint_id}/replay
GET /webhook-endpoints/{endpoint_id}/replays/{replay_id}
"""
# the ids the requested paths fill in
PATH_IDS = {
    "key_id": str(uuid.uuid4()),
    "batch_id": BATCH_ID,
    "number": "+15551230001",
    "call_id": CALL_ID,
    "endpoint_id": CALL_ID,
    "delivery_id": CALL_ID,
    "replay_id": CALL_ID,
}
# (method, route as registered, path requested)
PROTECTED = [
    (method, route, route.format(**PATH_IDS))
    for method, route in (line.split() for line in PROTECTED_ROUTES.strip().splitlines())
]
PUBLIC_PREFIXES = tuple(
    ["/healthz", "/readyz", "/metrics", "/webhooks/", "/openapi.json", "/asyncapi.json", "/docs"]
)
WELL_FORMED_UNKNOWN_KEY = "ck_" + "A" * 43


def bad_authorization(kind: str, secret: str) -> dict[str, str]:
    now = int(time.time())
    valid = {"sub": "u", "org_id": "org_x", "exp": now + 60}
    tokens = {
        "garbage": "not-a-jwt",
        "wrong secret": jwt.encode(valid, "x" * len(secret), algorithm="HS256"),
        "expired": jwt.encode({**valid, "exp": now - 3600}, secret, algorithm="HS256"),
        "alg none": jwt.encode(valid, None, algorithm="none"),  # type: ignore[arg-type]  # "none" takes no key
        "no org_id": jwt.encode({"sub": "u", "exp": now + 60}, secret, algorithm="HS256"),
    }
    if kind == "missing":
        return {}
    if kind == "not bearer":
        return {"Authorization": "Basic dXNlcjpwYXNz"}
    if kind == "garbage key":
        return {"X-API-Key": "let-me-in"}
    if kind == "unknown key":
        return {"X-API-Key": WELL_FORMED_UNKNOWN_KEY}
    if kind == "empty key":
        return {"X-API-Key": ""}
    return {"Authorization": f"Bearer {tokens[kind]}"}


BAD = [
    "missing",
    "not bearer",
    "garbage",
    "wrong secret",
    "expired",
    "alg none",
    "no org_id",
    "garbage key",
    "unknown key",
    "empty key",
]


def test_every_non_public_route_is_covered(gateway: Gateway) -> None:
    registered = {
        (route.method, route.resource.canonical)
        for route in gateway.client.app.router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        and not route.resource.canonical.startswith(PUBLIC_PREFIXES)
    }
    assert registered == {(method, route) for method, route, _ in PROTECTED}


@pytest.mark.parametrize("kind", BAD)
@pytest.mark.parametrize(("method", "path"), [(m, p) for m, _, p in PROTECTED])
async def test_route_answers_401_json_without_a_valid_token(
    gateway: Gateway, method: str, path: str, kind: str
) -> None:
    authorization = bad_authorization(kind, gateway.settings.jwt_secret)
    body: Any = {"to_number": "+14155550100"} if method in ("POST", "PUT", "PATCH") else None
    head = await gateway.head()
    response = await gateway.client.request(method, path, json=body, headers=authorization)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="calls"')
    error = (await response.json())["error"]
    assert error["code"] == "unauthorized"
    assert error["message"]
    assert await gateway.head() == head


async def test_unknown_route_does_not_reveal_itself_without_a_token(gateway: Gateway) -> None:
    response = await gateway.client.get("/admin")
    assert response.status == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_probes_need_no_token(gateway: Gateway, path: str) -> None:
    response = await gateway.client.get(path)
    assert response.status == 200


async def test_readiness_reports_database_broker_and_relay(gateway: Gateway) -> None:
    response = await gateway.client.get("/readyz")
    assert await response.json() == {
        "status": "ready",
        "checks": {"database": True, "broker": True, "relay_routing": True},
    }


async def test_webhooks_are_not_behind_the_bearer_token(gateway: Gateway) -> None:
    """They authenticate by carrier signature instead: unsigned is 403, not 401."""
    response = await gateway.client.post(
        f"/webhooks/twilio/status?call_id={CALL_ID}&org=org_x", data={"CallStatus": "ringing"}
    )
    assert response.status == 403
