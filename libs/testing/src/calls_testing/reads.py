"""Reading the API as a client should: a `503 catching_up` (the call log still recording events
accepted a moment ago, docs/api.md) is retried after its `Retry-After`, not taken as the answer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp


def catching_up(status: int, body: Any) -> bool:
    """Whether a response is the call log's documented 'retry shortly' (503 catching_up)."""
    error = body.get("error") if isinstance(body, dict) else None
    return status == 503 and isinstance(error, dict) and error.get("code") == "catching_up"


async def read_json(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], *, within: float = 30.0
) -> tuple[int, Any]:
    """GET `url`: (status, JSON body) of the first answer that is not `503 catching_up`, retried
    after each one's Retry-After for up to `within` seconds (then the 503 itself)."""
    deadline = time.monotonic() + within
    while True:
        async with http.get(url, headers=headers) as r:
            body = await r.json(content_type=None)
            retry_after = float(r.headers.get("Retry-After", "1"))
            status = r.status
        if not catching_up(status, body) or time.monotonic() + retry_after > deadline:
            return status, body
        await asyncio.sleep(retry_after)
