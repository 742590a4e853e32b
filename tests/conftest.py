"""End-to-end fixtures: the whole system as real processes (calls_testing.system, the same
entry points `make up` runs), on free ports, against this run's private database and RabbitMQ
vhost."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from calls_testing.plugin import AmqpFactory, DatabaseFactory
from calls_testing.system import JWT_SECRET, System, start_system, stop_system
from carrier_sim import SimulatorClient
from gateway.auth import issue_token


def gateway_token(org: str, sub: str) -> str:
    """A bearer token the end-to-end system's gateway accepts."""
    return issue_token(JWT_SECRET, organization_id=org, subject=sub, ttl_seconds=3600)


# Helpers the end-to-end modules share (they import them: `from tests.conftest import …`).


async def get_call(
    http: aiohttp.ClientSession, system: System, org: str, call_id: str
) -> dict[str, Any]:
    """GET /calls/{id} as `org`, which must answer 200."""
    async with http.get(f"{system.gateway}/calls/{call_id}", headers=system.auth(org)) as r:
        assert r.status == 200, await r.text()
        call: dict[str, Any] = await r.json()
        return call


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


def e2e_system(
    label: str,
    database_factory: DatabaseFactory,
    amqp_factory: AmqpFactory,
    tmp_path_factory: pytest.TempPathFactory,
    **options: Any,
) -> Iterator[System]:
    """A whole system of its own database, vhost (the in-process suites' relays must not feed
    its services) and recordings directory, all named `label`; stopped after. `options` go to
    calls_testing.system.start_system."""
    system = start_system(
        database_factory(label),
        amqp_factory(label),
        str(tmp_path_factory.mktemp(f"{label}-recordings")),
        issue_token=gateway_token,
        **options,
    )
    try:
        yield system
    finally:
        stop_system(system)


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
