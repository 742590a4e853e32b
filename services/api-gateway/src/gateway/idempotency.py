"""Idempotency-Key on the POST endpoints: the same key with the same request gets the same
response, and what the first request queued is never queued again.

The key is claimed in the request's own transaction, so a request that fails leaves no trace,
and two concurrent requests with one key serialize on the key's row.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from aiohttp import web
from calls_platform.db import Conn
from calls_platform.http import BadRequest, json_error
from pydantic import BaseModel

HEADER: Final = "Idempotency-Key"
MAX_KEY_LENGTH: Final = 255


def key_of(request: web.Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH:
        raise BadRequest(
            json_error(
                422,
                "validation_error",
                f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters",
                [{"field": HEADER, "message": "invalid length"}],
            )
        )
    return key


def fingerprint(request: web.Request, body: BaseModel) -> str:
    return hashlib.sha256(f"{request.path}\n{body.model_dump_json()}".encode()).hexdigest()


async def claim(conn: Conn, organization_id: str, key: str, print_: str) -> web.Response | None:
    """Reserve `key` for this request, or return the response already given for it."""
    cur = await conn.execute(
        "INSERT INTO gateway.idempotency_keys (organization_id, key, fingerprint)"
        " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING key",
        (organization_id, key, print_),
    )
    if await cur.fetchone() is not None:
        return None
    cur = await conn.execute(
        "SELECT fingerprint, status, response FROM gateway.idempotency_keys"
        " WHERE organization_id = %s AND key = %s",
        (organization_id, key),
    )
    row = await cur.fetchone()
    assert row is not None  # the conflicting row is committed: it is visible now
    if row["fingerprint"] != print_:
        return json_error(
            422,
            "idempotency_key_reused",
            f"this {HEADER} was used for a different request",
            [{"field": HEADER, "message": "already used with another body or path"}],
        )
    return web.json_response(row["response"], status=row["status"])


async def remember(
    conn: Conn, organization_id: str, key: str, status: int, response: dict[str, Any]
) -> None:
    await conn.execute(
        "UPDATE gateway.idempotency_keys SET status = %s, response = %s::jsonb"
        " WHERE organization_id = %s AND key = %s",
        (status, json.dumps(response), organization_id, key),
    )
