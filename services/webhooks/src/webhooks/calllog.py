"""The call log's internal query API, where a message's `data` comes from: the call (or batch)
exactly as GET /calls/{id} (or GET /calls/batch/{id}) shows it, passed through unchanged. The
call log waits until its projection has caught up with every event committed before the
read, so the view includes the event being turned into a message."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog
from calls_events import BATCH_WEBHOOK_EVENT_TYPES

log = structlog.get_logger(__name__)


class CallLogUnavailable(Exception):
    pass


class CallLog:
    def __init__(self, http: aiohttp.ClientSession) -> None:
        self._http = http

    async def view(
        self,
        *,
        organization_id: str,
        event_type: str,
        call_id: uuid.UUID | None,
        batch_id: str | None,
    ) -> dict[str, Any] | None:
        """The message's call or batch as GET shows it now (None: the call log has none)."""
        org = quote(organization_id, safe="")
        if event_type in BATCH_WEBHOOK_EVENT_TYPES:
            path = f"/internal/orgs/{org}/batches/{quote(batch_id or '', safe='')}"
        else:
            path = f"/internal/orgs/{org}/calls/{call_id}"
        try:
            async with self._http.get(path) as resp:
                if resp.status == 404:
                    return None
                if resp.status != 200:
                    raise CallLogUnavailable(f"call log answered {resp.status}")
                view: dict[str, Any] = await resp.json()
                return view
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CallLogUnavailable(repr(exc)) from None
