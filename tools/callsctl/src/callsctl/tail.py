"""Follow one call's event stream: what the store holds, then every event appended later
(polled: appends do not NOTIFY, see calls_platform.eventstore)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from calls_events import Envelope
from calls_platform.db import connect
from calls_platform.eventstore import read_stream
from calls_platform.notify import AppendListener, wait_for
from calls_platform.service import stop_tasks


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
    cancelled."""
    stream = call_stream(call_id)
    listener = AppendListener(database_url)
    wakeup = listener.subscribe()  # before the first read, so no append is missed
    tasks = [asyncio.create_task(listener.run(), name="tail-listener")] if follow else []
    try:
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
                await wait_for(wakeup, poll_seconds)
    finally:
        await stop_tasks(tasks)
