"""Follow one call's event stream: what the store holds, then every event appended later
(polled: appends do not NOTIFY, see calls_platform.eventstore)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from calls_events import Envelope
from calls_platform.db import connect
from calls_platform.eventstore import read_stream


def call_stream(call_id: uuid.UUID) -> str:
    return f"call-{call_id}"


async def tail_call(
    database_url: str,
    call_id: uuid.UUID,
    emit: Callable[[Envelope], None],
    *,
    follow: bool = True,
    poll_seconds: float = 0.2,
) -> None:
    """Emit the call's events in stream order; with `follow`, keep emitting new ones until
    cancelled.

    Polls, with no LISTEN connection beside it: appends do not NOTIFY, and a tail that also
    listened sometimes did not end within 10 s of Ctrl-C (its listener's cancellation)."""
    stream = call_stream(call_id)
    conn = await connect(database_url)
    async with conn:
        seen = 0
        while True:
            for envelope in await read_stream(conn, stream):
                version = envelope.stream_version or 0
                if version > seen:
                    emit(envelope)
                    seen = version
            if not follow:
                return
            await asyncio.sleep(poll_seconds)
