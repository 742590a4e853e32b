"""The composition roots' shared shape (calls_platform.service): a step that fails while a
service starts closes what the steps before it opened, a stopping service stops its tasks
before it closes what they use, and admin commands are dispatched by name."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from calls_platform.db import Pool
from calls_platform.service import Parts, Service, repeat, run_service, service_app

SERVICE = Service("test-service", schema="test_service", broker=False)


@dataclass(frozen=True)
class Settings:
    database_url: str = "postgresql://unused"
    migrate_on_start: bool = False
    host: str = "127.0.0.1"
    port: int = 0
    json_logs: bool = False
    log_level: str = "INFO"


class Failed(Exception):
    pass


def resource(events: list[str], name: str) -> contextlib.AbstractAsyncContextManager[str]:
    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[str]:
        events.append(f"open {name}")
        try:
            yield name
        finally:
            events.append(f"close {name}")

    return opened()


async def until_cancelled(events: list[str], name: str) -> None:
    try:
        await asyncio.Event().wait()
    finally:
        events.append(f"stop {name}")


async def start(app: web.Application) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    return runner


async def test_a_failing_step_closes_what_the_steps_before_it_opened() -> None:
    events: list[str] = []

    async def build(parts: Parts) -> None:
        assert await parts.enter(resource(events, "pool")) == "pool"
        await parts.enter(resource(events, "http"))

        async def close_broker() -> None:
            events.append("close broker")

        parts.close_with(close_broker)
        parts.task(until_cancelled(events, "relay"), name="relay")
        await asyncio.sleep(0)  # the task is running
        raise Failed("the broker's channel")

    runner = web.AppRunner(service_app(SERVICE, Settings(), build))
    with pytest.raises(Failed):
        await runner.setup()
    await runner.cleanup()

    assert events == [
        "open pool",
        "open http",
        "stop relay",
        "close broker",
        "close http",
        "close pool",
    ]


async def test_a_stopping_service_stops_its_tasks_before_it_closes_what_they_use() -> None:
    events: list[str] = []
    names: list[str] = []

    async def build(parts: Parts) -> None:
        await parts.enter(resource(events, "pool"))
        names.append(parts.task(until_cancelled(events, "projector"), name="projector").get_name())
        await parts.enter(resource(events, "http"))
        names.append(parts.task(until_cancelled(events, "sender"), name="sender").get_name())

    runner = await start(service_app(SERVICE, Settings(), build))
    await asyncio.sleep(0)
    assert events == ["open pool", "open http"]
    await runner.cleanup()

    assert names == ["projector", "sender"]
    assert events[2:4] == ["stop projector", "stop sender"]
    assert events[4:] == ["close http", "close pool"]


async def test_readyz_answers_the_checks_the_parts_registered() -> None:
    healthy = {"database": True}

    async def database() -> bool:
        return healthy["database"]

    async def build(parts: Parts) -> None:
        parts.check("database", database)
        assert parts.relay_health.checks() == {"relay_routing": True}

    async with TestClient(TestServer(service_app(SERVICE, Settings(), build))) as client:
        ready = await client.get("/readyz")
        assert ready.status == 200
        assert await ready.json() == {
            "status": "ready",
            "checks": {"database": True, "relay_routing": True},
        }
        healthy["database"] = False
        not_ready = await client.get("/readyz")
        assert not_ready.status == 503
        assert (await not_ready.json())["checks"]["database"] is False


@pytest.mark.integration
async def test_a_broker_out_of_reach_leaves_no_pool_open(
    database_factory: Callable[[str], str],
) -> None:
    url = database_factory("service")
    opened: list[Pool] = []

    async def build(parts: Parts) -> None:
        opened.append(await parts.pool(url, name="service-test", max_size=1, ready=True))
        await parts.broker("amqp://guest:guest@127.0.0.1:1/", prefetch=1)

    runner = web.AppRunner(service_app(SERVICE, Settings(database_url=url), build))
    with pytest.raises(OSError, match="1"):
        await runner.setup()
    await runner.cleanup()

    assert [pool.closed for pool in opened] == [True]


def test_an_admin_command_is_run_with_its_arguments_instead_of_serving() -> None:
    ran: list[tuple[str, list[str]]] = []

    async def hello(database_url: str, args: list[str]) -> None:
        ran.append((database_url, args))

    def no_settings() -> Settings:
        raise AssertionError("a command reads no service settings")

    run_service(
        SERVICE,
        no_settings,
        lambda settings: web.Application(),
        shutdown_timeout=1,
        commands={"hello": hello},
        argv=["hello", "--to", "world"],
    )
    assert [args for _, args in ran] == [["--to", "world"]]


def test_migrate_takes_no_arguments() -> None:
    def no_settings() -> Settings:
        raise AssertionError("a command reads no service settings")

    with pytest.raises(SystemExit, match="takes no arguments"):
        run_service(
            SERVICE,
            no_settings,
            lambda settings: web.Application(),
            shutdown_timeout=1,
            argv=["migrate", "now"],
        )


async def test_a_periodic_step_that_fails_is_tried_again() -> None:
    rounds: list[int] = []
    again = asyncio.Event()

    async def step() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise RuntimeError("a bug hit once")
        again.set()

    task = asyncio.create_task(repeat(step, every_seconds=0.01, name="test"))
    await asyncio.wait_for(again.wait(), timeout=5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert rounds[:2] == [0, 1]
