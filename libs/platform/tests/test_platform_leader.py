"""Leadership by a PostgreSQL advisory lock: one holder at a time, a quick takeover."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from calls_platform import db
from calls_platform.leader import lock_key, run_as_leader
from prometheus_client import REGISTRY

pytestmark = pytest.mark.integration

RETRY_SECONDS = 0.1


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Contender:
    """Signals while it runs its work, and runs until cancelled."""

    def __init__(self, name: str, anyone_leads: asyncio.Event) -> None:
        self.name = name
        self.leads = asyncio.Event()
        self.anyone_leads = anyone_leads
        self.leadership: list[bool] = []
        self.lost = asyncio.Event()

    def on_change(self, leading: bool) -> None:
        self.leadership.append(leading)
        if not leading:
            self.lost.set()

    @property
    def running(self) -> bool:
        return self.leads.is_set()

    async def work(self) -> None:
        self.leads.set()
        self.anyone_leads.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.leads.clear()

    def start(self, url: str, role: str) -> asyncio.Task[None]:
        return asyncio.create_task(
            run_as_leader(
                url,
                role,
                self.work,
                retry_seconds=RETRY_SECONDS,
                on_change=self.on_change,
            )
        )


async def test_only_one_contender_runs_and_the_other_takes_over_when_it_stops(
    database_factory: Callable[[str], str],
) -> None:
    url = database_factory("leader")
    anyone_leads = asyncio.Event()
    a, b = Contender("a", anyone_leads), Contender("b", anyone_leads)
    tasks = {"a": a.start(url, "relay"), "b": b.start(url, "relay")}
    try:
        await asyncio.wait_for(anyone_leads.wait(), 5)
        holder, other = (a, b) if a.running else (b, a)
        # several retry intervals in which the other must keep waiting
        await asyncio.sleep(RETRY_SECONDS * 5)
        assert (holder.running, other.running) == (True, False)

        await stop(tasks[holder.name])

        assert holder.running is False
        assert holder.leadership == [True, False]
        await asyncio.wait_for(other.leads.wait(), 5)
        assert other.leadership == [True]
    finally:
        for task in tasks.values():
            await stop(task)


async def test_work_stops_when_the_lock_connection_breaks(
    database_factory: Callable[[str], str],
) -> None:
    url = database_factory("leader")
    leads = asyncio.Event()
    contender = Contender("a", leads)
    task = contender.start(url, "relay")
    try:
        await asyncio.wait_for(leads.wait(), 5)
        async with await db.connect(url) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        await asyncio.wait_for(contender.lost.wait(), 5)
        assert not contender.running
        await asyncio.wait_for(contender.leads.wait(), 5)  # leads again on a new connection
        assert contender.leadership == [True, False, True]
    finally:
        await stop(task)


async def test_different_roles_lead_independently(database_factory: Callable[[str], str]) -> None:
    url = database_factory("leader")
    a, b = Contender("a", asyncio.Event()), Contender("b", asyncio.Event())
    tasks = [a.start(url, "relay"), b.start(url, "projector")]
    try:
        await asyncio.wait_for(asyncio.gather(a.leads.wait(), b.leads.wait()), 5)
    finally:
        for task in tasks:
            await stop(task)


async def test_work_that_returns_ends_leadership(database_factory: Callable[[str], str]) -> None:
    url = database_factory("leader")
    ran: list[str] = []

    def once(name: str) -> Callable[[], Coroutine[Any, Any, None]]:
        async def work() -> None:
            ran.append(name)

        return work

    await asyncio.wait_for(run_as_leader(url, "job", once("first"), retry_seconds=RETRY_SECONDS), 5)
    # the lock was released: the next contender gets it at once
    await asyncio.wait_for(
        run_as_leader(url, "job", once("second"), retry_seconds=RETRY_SECONDS), 5
    )

    assert ran == ["first", "second"]


async def test_crashed_work_releases_the_lock_and_is_restarted(
    database_factory: Callable[[str], str],
) -> None:
    """A bug hit by one event must not stop the dial loop or the projector for good."""
    url = database_factory("leader")
    attempts: list[int] = []
    standby_ran = asyncio.Event()

    async def crashes_twice() -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) <= 2:
            raise RuntimeError("boom")

    async def standby() -> None:
        standby_ran.set()

    await asyncio.wait_for(run_as_leader(url, "job", crashes_twice, retry_seconds=RETRY_SECONDS), 5)
    assert attempts == [1, 2, 3]
    # and the lock was released after each crash: another contender gets it at once
    await asyncio.wait_for(run_as_leader(url, "job", standby, retry_seconds=RETRY_SECONDS), 5)
    assert standby_ran.is_set()


async def test_leadership_held_gauge_is_one_only_while_leading(
    database_factory: Callable[[str], str],
) -> None:
    """Alerts read a leader's gauges only where `leadership_held` is 1."""
    url = database_factory("leader")

    def held() -> float | None:
        return REGISTRY.get_sample_value("leadership_held", {"role": "gauge-role"})

    contender = Contender("a", asyncio.Event())
    async with await db.connect(url) as other:  # another replica holds the lock first
        await other.execute("SELECT pg_advisory_lock(%s)", (lock_key("gauge-role"),))
        task = contender.start(url, "gauge-role")
        try:
            await asyncio.sleep(RETRY_SECONDS * 3)
            assert held() == 0  # a standby: exported, at 0
            await other.execute("SELECT pg_advisory_unlock(%s)", (lock_key("gauge-role"),))
            await asyncio.wait_for(contender.leads.wait(), 5)
            assert held() == 1
        finally:
            await stop(task)
    assert held() == 0
