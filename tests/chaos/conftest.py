"""Fixtures of the fault-injection suite: a fresh system per scenario, on the shared servers
(own database and vhost) or on private PostgreSQL / RabbitMQ instances it may restart."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from calls_testing.plugin import AmqpFactory, DatabaseFactory

from tests.chaos.harness import (
    PG_BIN,
    ChaosSystem,
    MakeSystem,
    PrivatePostgres,
    PrivateRabbit,
    Queues,
    chaos_system,
    have_postgres_binaries,
    running_postgres,
    shared_vhost_queues,
)

RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def chaos_postgres() -> Iterator[PrivatePostgres | None]:
    """A PostgreSQL cluster of the suite's own, where every scenario gets a database: its
    services open up to a hundred connections, and must not run the shared server out of
    them (or be run out by others). Without server binaries: the shared server."""
    if not have_postgres_binaries():
        yield None
        return
    with running_postgres() as server:
        yield server


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A cluster of the scenario's own, which it may restart."""
    if not have_postgres_binaries():
        pytest.skip(f"no PostgreSQL server binaries in {PG_BIN} (set CHAOS_PG_BIN)")
    with running_postgres() as server:
        yield server


@pytest.fixture
def private_rabbit() -> Iterator[PrivateRabbit]:
    if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
        pytest.skip("no rabbitmq-server here to run a private node")
    server = PrivateRabbit(RUN_ID)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
async def make_system(
    database_factory: DatabaseFactory,
    amqp_factory: AmqpFactory,
    chaos_postgres: PrivatePostgres | None,
) -> AsyncIterator[MakeSystem]:
    """Starts a whole system for a scenario: on the shared servers (a database and vhost of
    its own) unless given a private PostgreSQL or RabbitMQ."""
    systems: list[ChaosSystem] = []

    async def make(
        scenario: str,
        *,
        postgres: PrivatePostgres | None = None,
        rabbit: PrivateRabbit | None = None,
        started: bool = True,
        **options: Any,
    ) -> ChaosSystem:
        """`started=False`: nothing migrated or started; the scenario starts each service
        (which migrates its own schema as it starts). `options` go to `chaos_system`
        (dialers, extra_env, relay_process)."""
        label = f"chaos_{scenario.replace('-', '_')}"
        postgres = postgres or chaos_postgres
        if postgres is not None:
            database_url = postgres.create_database(f"calls_{label}")
        else:
            database_url = database_factory(label)
        queues: Queues
        if rabbit is not None:
            amqp_url, queues = rabbit.url, rabbit.queues
        else:
            amqp_url = amqp_factory(label)
            vhost = unquote(urlsplit(amqp_url).path[1:]) or "/"
            queues = lambda: shared_vhost_queues(vhost)  # noqa: E731
        system = await chaos_system(
            database_url,
            amqp_url,
            scenario,
            queues=queues,
            started=started,
            migrate=started,
            **options,
        )
        systems.append(system)
        return system

    yield make
    for system in systems:
        system.close()
