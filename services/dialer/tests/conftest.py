"""Fixtures for the dialer's tests: a freshly migrated database per test, the carrier
simulator in-process on an ephemeral port (calls_testing), a TwilioCarrier (the real twilio
library) pointed at it, and small helpers to request calls and read back what the dialer
recorded."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, overload

import pytest
from calls_events import (
    BatchRequested,
    CallRequested,
    Envelope,
    Event,
    Schedule,
    requested_calls,
)
from calls_platform import eventstore
from calls_platform.db import Pool
from calls_platform.notify import Listener
from calls_platform.service import stop_tasks
from calls_testing import unique_number
from calls_testing.events import E, append_as_gateway, of_kind, read_call_events, wrap_batch
from calls_testing.receiver import Receiver, webhook_receiver
from calls_testing.serving import pooled
from calls_testing.simulator import LocalSimulator, local_simulator
from calls_testing.waiting import Wait
from carrier_sim import SimConfig
from dialer import carrier_news
from dialer.__main__ import migrate
from dialer.carrier import Carrier
from dialer.dial_queue import enqueue
from dialer.dials import WORK_CHANNEL
from dialer.scheduler import DialLoop
from dialer.twilio_carrier import TwilioCarrier, TwilioSettings

FROM_NUMBER = "+15017122661"

Background = Callable[[Awaitable[Any]], "asyncio.Task[Any]"]
"""The `background` fixture: `background(coro)` runs it as a task stopped after the test."""
StopTask = Callable[["asyncio.Task[Any]"], Awaitable[None]]
"""The `stop_task` fixture: cancel a dial loop the way shutdown does and wait for it."""
CARRIER_TIMEOUT_SECONDS = 2.0


# --- database ---------------------------------------------------------------------------------


@pytest.fixture
async def dialer_db(database_factory: Callable[[str], str]) -> str:
    """A fresh database with the event store and dialer schemas (the dial loop takes any
    pending dial, and fairness is global, so tests do not share one)."""
    url = database_factory("dialer")
    await migrate(url)
    return url


@pytest.fixture
async def pool(dialer_db: str) -> AsyncIterator[Pool]:
    async with pooled(dialer_db, name="dialer-test", max_size=20) as pool:
        yield pool


@pytest.fixture
async def work(dialer_db: str) -> AsyncIterator[Listener]:
    """The dialer's work listener, running (a dial loop also polls without it)."""
    listener = Listener(dialer_db, WORK_CHANNEL)
    task = asyncio.create_task(listener.run())
    try:
        yield listener
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class WallClock:
    """A dial loop's wall clock (`DialLoop(wall_clock=…)`) in a test: the real time, until the
    test sets a moment (e.g. some seconds after a dial started), so that it need not sleep
    through a delay and a slow machine cannot overshoot it."""

    def __init__(self) -> None:
        self.moment: datetime | None = None

    def __call__(self) -> datetime:
        return self.moment or datetime.now(UTC)

    def set(self, moment: datetime, *, plus_seconds: float = 0.0) -> None:
        self.moment = moment + timedelta(seconds=plus_seconds)

    def real(self) -> None:
        self.moment = None


@pytest.fixture
def wall_clock() -> WallClock:
    return WallClock()


@dataclass
class Calls:
    """Requests calls the way the gateway does (a CallRequested in the event store) and reads
    back the dialer's table and the events it appended."""

    pool: Pool

    async def requested(
        self,
        org: str,
        to_number: str | None = None,
        *,
        batch_id: str | None = None,
        record: bool = False,
        **fields: Any,
    ) -> tuple[Envelope, CallRequested]:
        """Append a CallRequested as the gateway does (`fields`: more of its fields, e.g.
        campaign rules); return it as recorded (with its position)."""
        event = CallRequested(
            call_id=uuid.uuid4(),
            to_number=to_number or unique_number(),
            from_number=FROM_NUMBER,
            batch_id=batch_id,
            record=record,
            requested_by="test",
            **fields,
        )
        recorded = await append_as_gateway(self.pool, event, org)
        return recorded, event

    async def enqueued(
        self,
        org: str,
        to_number: str | None = None,
        *,
        batch_id: str | None = None,
        **fields: Any,
    ) -> CallRequested:
        envelope, event = await self.requested(org, to_number, batch_id=batch_id, **fields)
        async with self.pool.connection() as conn:
            assert await enqueue(conn, envelope, event)
        return event

    async def batch_requested(
        self,
        org: str,
        numbers: int | list[str],
        *,
        batch_id: str | None = None,
        schedule: Schedule | None = None,
        **fields: Any,
    ) -> tuple[Envelope, list[CallRequested]]:
        """Append a BatchRequested carrying its calls (`numbers`: how many, or their
        numbers; `schedule`: each call's; `fields`: more of the batch's), as the gateway
        does; return it as recorded and the requests it carries, in order."""
        to = [unique_number() for _ in range(numbers)] if isinstance(numbers, int) else numbers
        envelope = wrap_batch(
            to,
            org,
            from_number=FROM_NUMBER,
            batch_id=batch_id,
            call={"schedule": schedule},
            record=False,
            **fields,
        )
        async with self.pool.connection() as conn:
            [recorded] = await eventstore.append(conn, [envelope])
        batch = recorded.event()
        assert isinstance(batch, BatchRequested)
        return recorded, requested_calls(batch)

    async def carrier_says(self, call_id: uuid.UUID, *statuses: str) -> None:
        """The call's status callbacks say `statuses`, in this order (as the consumer notes
        them)."""
        async with self.pool.connection() as conn:
            for status in statuses:
                await carrier_news.note_carrier_status(conn, call_id, status)

    async def dial(self, call_id: uuid.UUID) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM dialer.dials WHERE call_id = %s", (call_id,))
            row = await cur.fetchone()
        assert row is not None, f"no dial for {call_id}"
        return row

    async def state(self, call_id: uuid.UUID) -> str:
        return str((await self.dial(call_id))["state"])

    async def started(self, call_id: uuid.UUID) -> datetime:
        """When the dial's latest attempt was claimed (`dial_started_at`, the database's clock)."""
        started: datetime | None = (await self.dial(call_id))["dial_started_at"]
        assert started is not None, f"{call_id} was never claimed"
        return started

    @overload
    async def events(self, call_id: uuid.UUID) -> list[Event]: ...

    @overload
    async def events(self, call_id: uuid.UUID, kind: type[E]) -> list[E]: ...

    async def events(self, call_id: uuid.UUID, kind: type[Event] | None = None) -> list[Any]:
        """The call's events after its CallRequested (only those of `kind`, if given)."""
        events = await read_call_events(self.pool, call_id, after=CallRequested)
        return events if kind is None else of_kind(events, kind)


@pytest.fixture
def calls(pool: Pool) -> Calls:
    return Calls(pool)


# --- carrier simulator ------------------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """Stands in for the gateway's webhook endpoint: accepts and records the callbacks."""
    async with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
async def sim(receiver: Receiver) -> AsyncIterator[LocalSimulator]:
    # depends on `receiver` so that play-outs stop before the receiver goes away
    async with local_simulator(SimConfig(ring_seconds=0.05, talk_seconds=0.1)) as sim:
        yield sim


def carrier_settings(sim: LocalSimulator, receiver: Receiver, **changes: Any) -> TwilioSettings:
    settings: dict[str, Any] = {
        "account_sid": sim.config.account_sid,
        "auth_token": sim.config.auth_token,
        "api_url": sim.url,
        "public_base_url": receiver.url,
        "agent_stream_url": "wss://x.invalid/s",
        "machine_detection": "Enable",
        "timeout_seconds": CARRIER_TIMEOUT_SECONDS,
    }
    settings.update(changes)
    return TwilioSettings(**settings)


@pytest.fixture
async def make_carrier(
    sim: LocalSimulator, receiver: Receiver
) -> AsyncIterator[Callable[..., TwilioCarrier]]:
    """`make_carrier(**settings_changes)`: a TwilioCarrier at the simulator, closed after."""
    carriers: list[TwilioCarrier] = []

    def build(**changes: Any) -> TwilioCarrier:
        carrier = TwilioCarrier(carrier_settings(sim, receiver, **changes))
        carriers.append(carrier)
        return carrier

    try:
        yield build
    finally:
        for carrier in carriers:
            await carrier.close()


@pytest.fixture
async def carrier(make_carrier: Callable[..., TwilioCarrier]) -> TwilioCarrier:
    return make_carrier()


# --- background tasks -------------------------------------------------------------------------


@pytest.fixture
async def background(pool: Pool, work: Listener) -> AsyncIterator[Background]:
    """`background(coro)` runs it as a task that is cancelled (and awaited) at the end of the
    test, before the pool and the work listener close."""
    tasks: list[asyncio.Task[Any]] = []

    def start(coro: Awaitable[Any]) -> asyncio.Task[Any]:
        async def run() -> Any:
            return await coro

        task = asyncio.create_task(run())
        tasks.append(task)
        return task

    try:
        yield start
    finally:
        await stop_tasks(tasks)


async def stop(task: asyncio.Task[Any]) -> None:
    """Cancel a dial loop the way shutdown does and wait for it to drain."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
def stop_task() -> StopTask:
    return stop


# --- a dial loop against the simulator ------------------------------------------------------


@dataclass
class Loops:
    """What a test of the dial loop works with: the database, the work listener, the helpers,
    and `loop`/`start`/`run_until` to make and run a DialLoop of them."""

    pool: Pool
    work: Listener
    calls: Calls
    background: Background
    wait: Wait
    stop_task: StopTask

    def loop(self, carrier: Carrier, *, pool: Any = None, **options: Any) -> DialLoop:
        """A DialLoop (`pool`: another pool, or one that stands in for it)."""
        options.setdefault("calls_per_second", 20)
        return DialLoop(pool or self.pool, carrier, self.work, **options)

    def start(self, loop: DialLoop) -> asyncio.Task[Any]:
        """Run `loop` in the background."""
        return self.background(loop.run())

    async def run_until(
        self, loop: DialLoop, done: Callable[[], Awaitable[bool]], what: str
    ) -> None:
        """Run `loop` until `done`, then stop it as shutdown does (drained)."""
        task = self.start(loop)
        await self.wait(done, what=what)
        await self.stop_task(task)


@pytest.fixture
def loops(
    pool: Pool,
    work: Listener,
    calls: Calls,
    background: Background,
    wait: Wait,
    stop_task: StopTask,
) -> Loops:
    return Loops(pool, work, calls, background, wait, stop_task)


@dataclass
class Rig(Loops):
    """Loops against the carrier simulator, through a TwilioCarrier."""

    carrier: TwilioCarrier
    sim: LocalSimulator

    def loop(self, carrier: Carrier | None = None, *, pool: Any = None, **options: Any) -> DialLoop:
        """A DialLoop with the TwilioCarrier (or `carrier`)."""
        return super().loop(carrier or self.carrier, pool=pool, **options)

    def start(self, loop: DialLoop | None = None, **options: Any) -> asyncio.Task[Any]:
        """Run `loop` (or a new one with `options`) in the background."""
        return super().start(loop or self.loop(**options))


@pytest.fixture
def rig(loops: Loops, carrier: TwilioCarrier, sim: LocalSimulator) -> Rig:
    return Rig(**vars(loops), carrier=carrier, sim=sim)
