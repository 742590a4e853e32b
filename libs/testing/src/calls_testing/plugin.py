"""The pytest plugin of the test kit (the `pytest11` entry point of calls-testing): a private
PostgreSQL database and RabbitMQ vhost per test run, against the real servers (URLs from the
environment; testcontainers when no server is configured or reachable and Docker is there).

Environment:
  TEST_DATABASE_URL  admin URL of a PostgreSQL server (default postgresql://postgres@127.0.0.1:5432/postgres)
  TEST_AMQP_URL      URL of a RabbitMQ server (default amqp://guest:guest@127.0.0.1:5672/)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from calls_testing.waiting import Wait, wait_until

RUN_ID = uuid.uuid4().hex[:10]

DatabaseFactory = Callable[..., str]
"""The `database_factory` fixture: `database_factory(label="db")` creates an empty database
for this run (dropped at its end) and returns its URL."""

AmqpFactory = Callable[[str], str]
"""The `amqp_factory` fixture: `amqp_factory(label)` returns the URL of this run's private
RabbitMQ vhost of that label (created once, deleted at the end)."""


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or default_port)
    try:
        with socket.create_connection(address, 2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    if _reachable(url, 5432):
        yield url
        return
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:15", driver=None) as container:
        yield container.get_connection_url()


@pytest.fixture(scope="session")
def database_factory(postgres_admin_url: str) -> Iterator[DatabaseFactory]:
    """Creates empty databases for this run and drops them all at the end."""
    created: list[str] = []

    def create(label: str = "db") -> str:
        name = f"calls_test_{RUN_ID}_{label}_{len(created)}"
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return make_conninfo(postgres_admin_url, dbname=name)

    yield create
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        for name in created:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def database_url(database_factory: DatabaseFactory) -> str:
    """One database shared by a whole test session (tests isolate by organization id)."""
    return database_factory("shared")


@pytest.fixture(scope="session")
def amqp_factory() -> Iterator[AmqpFactory]:
    """Creates private RabbitMQ vhosts for this run (one per label) and deletes them at the end.

    Suites that run services get vhosts of their own: a relay in one suite must never feed
    another suite's consumers.
    """
    base = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    if not _reachable(base, 5672):
        from testcontainers.rabbitmq import RabbitMqContainer

        with RabbitMqContainer("rabbitmq:3.13") as container:
            params = container.get_connection_params()
            yield lambda label: f"amqp://guest:guest@{params.host}:{params.port}/"
        return
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:  # a remote broker: share its vhost
        yield lambda label: base
        return
    created: list[str] = []
    user = urlsplit(base).username or "guest"
    parts = urlsplit(base)

    def create(label: str) -> str:
        vhost = f"calls_test_{RUN_ID}_{label}"
        if vhost not in created:
            subprocess.run([ctl, "-q", "add_vhost", vhost], check=True, capture_output=True)
            subprocess.run(
                [ctl, "-q", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
                check=True,
                capture_output=True,
            )
            created.append(vhost)
        return urlunsplit((parts.scheme, parts.netloc, "/" + vhost, "", ""))

    yield create
    for vhost in created:
        subprocess.run([ctl, "-q", "delete_vhost", vhost], check=False, capture_output=True)


@pytest.fixture(scope="session")
def amqp_url(amqp_factory: AmqpFactory) -> str:
    """The private RabbitMQ vhost shared by in-process tests of this run."""
    return amqp_factory("shared")


@pytest.fixture(scope="session")
def wait() -> Wait:
    """`await wait(condition, within=…, what=…)`: `calls_testing.wait_until`."""
    return wait_until


@pytest.fixture(autouse=True)
def _no_twilio_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    # the twilio client reads these from os.environ and would rewrite a simulator's host
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    monkeypatch.delenv("TWILIO_REGION", raising=False)
