"""End-to-end fixtures: the whole system as real processes (calls_testing.system, the same
entry points `make up` runs), on free ports, against this run's private database and RabbitMQ
vhost."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from calls_testing import unique_number
from calls_testing.plugin import AmqpFactory, DatabaseFactory
from calls_testing.reads import read_json
from calls_testing.system import (
    JWT_SECRET,
    System,
    SystemOptions,
    free_port,
    prepare_system,
    start_system,
    stop_system,
    wait_ready,
)
from carrier_sim import SimulatorClient
from gateway.auth import issue_token


def gateway_token(org: str, sub: str) -> str:
    """A bearer token the end-to-end system's gateway accepts."""
    return issue_token(JWT_SECRET, organization_id=org, subject=sub, ttl_seconds=3600)


# Helpers the end-to-end modules share (they import them: `from tests.conftest import …`).


async def get_call(
    http: aiohttp.ClientSession, system: System, org: str, call_id: str
) -> dict[str, Any]:
    """GET /calls/{id} as `org`, which must answer 200 (after any `503 catching_up`)."""
    status, call = await read_json(http, f"{system.gateway}/calls/{call_id}", system.auth(org))
    assert status == 200, call
    return dict(call)


async def get_batch(
    http: aiohttp.ClientSession, system: System, org: str, batch_id: str
) -> dict[str, Any]:
    """GET /calls/batch/{id} as `org`, which must answer 200 (after any `503 catching_up`)."""
    url = f"{system.gateway}/calls/batch/{batch_id}"
    status, batch = await read_json(http, url, system.auth(org))
    assert status == 200, batch
    return dict(batch)


async def download_recording(
    http: aiohttp.ClientSession, system: System, org: str, call_id: str
) -> bytes:
    """GET /calls/{id}/recording as `org`, which must answer 200 with a WAV; its body."""
    async with http.get(
        f"{system.gateway}/calls/{call_id}/recording", headers=system.auth(org)
    ) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "audio/wav"
        return await r.read()


async def place_call(http: aiohttp.ClientSession, system: System, org: str, **body: Any) -> str:
    """POST /calls as `org` (to a number of its own unless `body` names one), which must be
    accepted (202); the call's id."""
    async with http.post(
        f"{system.gateway}/calls",
        json={"to_number": unique_number(), **body},
        headers=system.auth(org),
    ) as r:
        assert r.status == 202, await r.text()
        call_id: str = (await r.json())["call_id"]
    return call_id


RECORDING_SECONDS = 90.0
"""How long a call may take, on a loaded machine, from its POST to its recording stored (the
call is dialed, talks, ends; the recording is reported, downloaded and stored)."""


async def recording_stored(
    http: aiohttp.ClientSession,
    system: System,
    org: str,
    call_id: str,
    seconds: float = RECORDING_SECONDS,
) -> dict[str, Any]:
    """The call once the call log shows its recording (within `seconds`)."""
    deadline = time.monotonic() + seconds
    call = await get_call(http, system, org, call_id)
    while not call["recording_url"]:
        assert time.monotonic() < deadline, f"no recording stored: {call}"
        await asyncio.sleep(0.25)
        call = await get_call(http, system, org, call_id)
    return call


# A customer's webhook endpoint, for the webhooks tests (e2e and chaos).


@dataclass
class Received:
    """One request a Receiver took."""

    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """A customer's endpoint: records every request; `answer` decides each response (by the
    number of the request, from 1) as (status, seconds to wait first)."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    answer: Callable[[int], tuple[int, float]] = lambda n: (200, 0.0)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(dict(request.headers), body, time.monotonic()))
        status, delay = self.answer(len(self.received))
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=status, text=f"answer {status}")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def of_call(self, call_id: str) -> list[Received]:
        def of(r: Received) -> Any:
            data = r.json.get("data") or {}
            return data.get("call_id", data.get("id"))

        return [r for r in self.received if of(r) == call_id]


def e2e_system(
    label: str,
    database_factory: DatabaseFactory,
    amqp_factory: AmqpFactory,
    tmp_path_factory: pytest.TempPathFactory,
    **options: Any,
) -> Iterator[System]:
    """A whole system of its own database, vhost (the in-process suites' relays must not feed
    its services) and recordings directory, all named `label`; stopped after. `options` are
    calls_testing.system.SystemOptions' fields."""
    prepared = prepare_system(
        database_factory(label),
        amqp_factory(label),
        str(tmp_path_factory.mktemp(f"{label}-recordings")),
        SystemOptions(issue_token=gateway_token, **options),
    )
    system = start_system(prepared)
    try:
        yield system
    finally:
        stop_system(system)


async def running(system: System) -> System:
    """`system` with every service running and ready: those a test stopped started again."""
    for service in system.services.values():
        if service.process is None or service.process.poll() is not None:
            service.start()
    for service in system.services.values():
        await wait_ready(service.url)
    return system


@pytest.fixture(scope="session")
def system_services(
    database_factory: DatabaseFactory,
    amqp_factory: AmqpFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[System]:
    yield from e2e_system("e2e", database_factory, amqp_factory, tmp_path_factory)


@pytest.fixture(scope="session")
async def system(system_services: System) -> System:
    await system_services.ready()
    return system_services


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def sim(system: System, http: aiohttp.ClientSession) -> SimulatorClient:
    """The end-to-end system's carrier simulator, through its control client."""
    return SimulatorClient(http, system.simulator)
