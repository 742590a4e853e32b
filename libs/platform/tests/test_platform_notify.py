"""Wake-ups by LISTEN/NOTIFY, and the bounded wait the relay and projectors sleep in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from calls_platform import eventstore
from calls_platform.db import Pool, open_pool
from calls_platform.migrate import migrate_event_store
from calls_platform.notify import AppendListener, wait_for


async def test_wait_for_returns_and_clears_when_woken() -> None:
    wakeup = asyncio.Event()
    wakeup.set()

    await asyncio.wait_for(wait_for(wakeup, 10), 1)

    assert not wakeup.is_set()


async def test_wait_for_returns_after_the_timeout_without_a_wakeup() -> None:
    await asyncio.wait_for(wait_for(asyncio.Event(), 0.01), 1)


@pytest.mark.parametrize("ticks", range(6))
async def test_wait_for_honours_a_cancel_that_lands_with_the_wakeup(ticks: int) -> None:
    """A relay cancelled on losing leadership must stop even if it was being woken just then.
    Each case lets the wakeup get `ticks` loop iterations ahead before the cancel arrives."""
    wakeup = asyncio.Event()
    loops = 0

    async def loop_forever() -> None:
        nonlocal loops
        while True:
            await wait_for(wakeup, 10)
            loops += 1

    task = asyncio.create_task(loop_forever())
    await asyncio.sleep(0)  # let it start waiting
    wakeup.set()
    for _ in range(ticks):
        await asyncio.sleep(0)
    task.cancel()

    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert task.cancelled()


@pytest.fixture
async def pool(database_factory: Callable[[str], str]) -> AsyncIterator[tuple[str, Pool]]:
    url = database_factory("notify")
    pool = await open_pool(url, name="test-notify")
    async with pool:
        async with pool.connection() as conn:
            await migrate_event_store(conn)
        yield url, pool


@pytest.mark.integration
async def test_a_notification_wakes_every_subscriber(pool: tuple[str, Pool]) -> None:
    url, store = pool
    listener = AppendListener(url)
    first, second = listener.subscribe(), listener.subscribe()
    task = asyncio.create_task(listener.run())
    try:
        # the listener wakes everyone once it is listening, to catch up on missed notifications
        await asyncio.wait_for(asyncio.gather(first.wait(), second.wait()), 5)
        first.clear()
        second.clear()

        # appends do not notify (a NOTIFY serializes commits); a writer may, after its commit
        async with store.connection() as conn:
            await eventstore.notify_appended(conn)

        await asyncio.wait_for(asyncio.gather(first.wait(), second.wait()), 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
