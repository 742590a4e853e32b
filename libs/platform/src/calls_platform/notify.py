"""Wake-ups through PostgreSQL LISTEN/NOTIFY (e.g. when the event store commits).

Notifications are a latency optimisation only: readers also poll, so a lost notification
(or a dropped LISTEN connection) delays work by at most the poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
import structlog

from .db import connect
from .eventstore import NOTIFY_CHANNEL

log = structlog.get_logger(__name__)


class Listener:
    def __init__(self, database_url: str, channel: str) -> None:
        self._url = database_url
        self._channel = channel
        self._wakeups: list[asyncio.Event] = []

    def subscribe(self) -> asyncio.Event:
        """An event that is set after every notification; the subscriber clears it."""
        wakeup = asyncio.Event()
        self._wakeups.append(wakeup)
        return wakeup

    def _wake_all(self) -> None:
        for wakeup in self._wakeups:
            wakeup.set()

    async def run(self) -> None:
        while True:
            try:
                conn = await connect(self._url)
                async with conn:
                    await conn.execute(f"LISTEN {self._channel}")
                    self._wake_all()  # catch up on anything notified while not listening
                    async for _ in conn.notifies():
                        self._wake_all()
            except psycopg.Error as exc:
                log.warning("listener_reconnecting", channel=self._channel, error=str(exc))
                self._wake_all()
                await asyncio.sleep(1)


async def wait_for(wakeup: asyncio.Event, seconds: float) -> None:
    """Wait until `wakeup` is set or `seconds` pass, then clear it.

    Not asyncio.wait_for: on Python 3.11 it swallows a cancel that lands as `wakeup` is set,
    and the cancelled loop (a relay or projector that lost leadership) would run on.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wakeup.wait()
    wakeup.clear()


class AppendListener(Listener):
    """Wakes subscribers whenever events are appended to the event store."""

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url, NOTIFY_CHANNEL)
