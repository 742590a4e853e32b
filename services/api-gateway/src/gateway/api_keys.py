"""API keys: issued once, stored as a hash, revoked at once; `X-API-Key` resolves to a scope.

A key is `ck_` followed by 43 base62 characters (256 bits). The prefix makes a leaked key easy
to recognize (secret scanners, logs); only its SHA-256 is stored, so the key is shown once,
when it is created, and never again.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import uuid
from datetime import datetime
from typing import Any, Final

from aiohttp import web
from calls_platform.db import Conn, Pool
from calls_platform.http import json_error, parse_body

from .auth import Principal, Unauthenticated
from .context import POOL, principal
from .models import CreateApiKey

KEY_PREFIX: Final = "ck_"
_ALPHABET: Final = string.ascii_letters + string.digits
_RANDOM_LENGTH: Final = 43  # 43 base62 characters ≈ 256 bits
KEY_PATTERN: Final = re.compile(rf"^{KEY_PREFIX}[A-Za-z0-9]{{{_RANDOM_LENGTH}}}$")
SHOWN_PREFIX_LENGTH: Final = len(KEY_PREFIX) + 8
# last_used_at is refreshed at most this often per key: a write per request would cost more
# than the information is worth.
LAST_USED_RESOLUTION_SECONDS: Final = 60


def new_key() -> str:
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LENGTH))


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def issue(
    conn: Conn, *, organization_id: str, name: str, scopes: list[str], created_by: str
) -> dict[str, Any]:
    """Create a key; the returned document is the only place the key ever appears."""
    key = new_key()
    key_id = uuid.uuid4()
    scopes = sorted(set(scopes))
    cur = await conn.execute(
        "INSERT INTO gateway.api_keys (id, organization_id, name, prefix, key_hash, scopes,"
        " created_by) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING created_at",
        (
            key_id,
            organization_id,
            name,
            key[:SHOWN_PREFIX_LENGTH],
            key_hash(key),
            scopes,
            created_by,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return {
        "id": str(key_id),
        "name": name,
        "key": key,
        "prefix": key[:SHOWN_PREFIX_LENGTH],
        "scopes": scopes,
        "created_at": row["created_at"].isoformat(),
    }


async def authenticate(pool: Pool, key: str) -> Principal:
    """The principal an `X-API-Key` stands for; Unauthenticated if it is unknown or revoked."""
    key = key.strip()
    if not KEY_PATTERN.match(key):
        raise Unauthenticated("invalid API key")
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, organization_id, scopes, revoked_at,"
            " last_used_at IS NULL OR last_used_at < now() - make_interval(secs => %s) AS stale"
            " FROM gateway.api_keys WHERE key_hash = %s",
            (LAST_USED_RESOLUTION_SECONDS, key_hash(key)),
        )
        row = await cur.fetchone()
        if row is None:
            raise Unauthenticated("invalid API key")
        if row["revoked_at"] is not None:
            raise Unauthenticated("API key revoked")
        if row["stale"]:
            await conn.execute(
                "UPDATE gateway.api_keys SET last_used_at = now() WHERE id = %s", (row["id"],)
            )
    return Principal(
        organization_id=row["organization_id"],
        subject=f"api-key:{row['id']}",
        scopes=frozenset(row["scopes"]),
        api_key_id=row["id"],
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _managed_with_jwt(request: web.Request) -> Principal:
    who = principal(request)
    if who.is_api_key:
        # A key that could mint keys would outlive its own revocation.
        raise web.HTTPForbidden(reason="API keys are managed with a JWT, not with an API key")
    return who


async def create_api_key(request: web.Request) -> web.Response:
    who = _managed_with_jwt(request)
    body = await parse_body(request, CreateApiKey)
    async with request.app[POOL].connection() as conn:
        issued = await issue(
            conn,
            organization_id=who.organization_id,
            name=body.name,
            scopes=list(body.scopes),
            created_by=who.subject,
        )
    return web.json_response(issued, status=201, headers={"Cache-Control": "no-store"})


async def list_api_keys(request: web.Request) -> web.Response:
    who = _managed_with_jwt(request)
    async with request.app[POOL].connection() as conn:
        cur = await conn.execute(
            "SELECT id, name, prefix, scopes, created_at, last_used_at FROM gateway.api_keys"
            " WHERE organization_id = %s AND revoked_at IS NULL ORDER BY created_at, id",
            (who.organization_id,),
        )
        rows = await cur.fetchall()
    return web.json_response(
        {
            "items": [
                {
                    "id": str(row["id"]),
                    "name": row["name"],
                    "prefix": row["prefix"],
                    "scopes": row["scopes"],
                    "created_at": row["created_at"].isoformat(),
                    "last_used_at": _iso(row["last_used_at"]),
                }
                for row in rows
            ]
        }
    )


async def revoke_api_key(request: web.Request) -> web.Response:
    who = _managed_with_jwt(request)
    try:
        key_id = uuid.UUID(request.match_info["key_id"])
    except ValueError:
        return json_error(404, "not_found", "no such API key")
    async with request.app[POOL].connection() as conn:
        cur = await conn.execute(
            "UPDATE gateway.api_keys SET revoked_at = now()"
            " WHERE id = %s AND organization_id = %s AND revoked_at IS NULL RETURNING id",
            (key_id, who.organization_id),
        )
        if await cur.fetchone() is None:
            return json_error(404, "not_found", "no such API key")
    return web.Response(status=204)
