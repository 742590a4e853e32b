"""End-to-end fixtures: the whole system as real processes (the same entry points `make up`
runs), on free ports, against this run's private database and RabbitMQ vhost."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest
from aiohttp import web
from gateway.auth import issue_token

SIM_ACCOUNT_SID = "ACf00df00df00df00df00df00df00df00d"
SIM_AUTH_TOKEN = "simulator-auth-token"
JWT_SECRET = "e2e-test-secret-that-is-long-enough-for-hs256"
LOGS = Path(os.environ.get("E2E_LOG_DIR", "/tmp")) / "calls-e2e-logs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    name: str
    module: str
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        if self.log is None:
            self.log = open(LOGS / f"{self.name}.log", "ab")  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env={**os.environ, **self.env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def close(self) -> None:
        self.stop()
        if self.log is not None:
            self.log.close()
            self.log = None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@dataclass
class System:
    services: dict[str, Service] = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        return self.services["gateway"].url

    @property
    def simulator(self) -> str:
        return self.services["simulator"].url

    def token(self, org: str, sub: str = "e2e") -> str:
        return issue_token(JWT_SECRET, organization_id=org, subject=sub, ttl_seconds=3600)

    def auth(self, org: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(org)}"}


# Helpers the end-to-end modules share (they import them: `from tests.conftest import …`).


def unique_number() -> str:
    """A valid E.164 number no other test uses."""
    return "+1415" + str(uuid.uuid4().int)[:7]


async def get_call(
    http: aiohttp.ClientSession, system: System, org: str, call_id: str
) -> dict[str, Any]:
    """GET /calls/{id} as `org`, which must answer 200."""
    async with http.get(f"{system.gateway}/calls/{call_id}", headers=system.auth(org)) as r:
        assert r.status == 200, await r.text()
        call: dict[str, Any] = await r.json()
        return call


async def set_faults(http: aiohttp.ClientSession, system: System, **faults: Any) -> None:
    """Switch the carrier simulator's faults (POST /_sim/faults)."""
    async with http.post(f"{system.simulator}/_sim/faults", json=faults) as r:
        assert r.status == 200, await r.text()


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


async def wait_ready(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {seconds}s")


def system_env(
    database_url: str, amqp_url: str, ports: dict[str, int], recordings_dir: str
) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "AMQP_URL": amqp_url,
        "GATEWAY_PORT": str(ports["gateway"]),
        "CALL_LOG_PORT": str(ports["call_log"]),
        "DIALER_PORT": str(ports["dialer"]),
        "RECORDINGS_PORT": str(ports["recordings"]),
        "WEBHOOKS_PORT": str(ports["webhooks"]),
        "SIM_PORT": str(ports["simulator"]),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{ports['gateway']}",
        "CALL_LOG_URL": f"http://127.0.0.1:{ports['call_log']}",
        "RECORDINGS_URL": f"http://127.0.0.1:{ports['recordings']}",
        "WEBHOOKS_URL": f"http://127.0.0.1:{ports['webhooks']}",
        # the tests' receivers listen on 127.0.0.1, over plain HTTP
        "WEBHOOKS_ALLOW_PRIVATE": "true",
        # retries after about 0.5 s, 1 s, 2 s, ... up to 4 s (5 s, doubling to an hour, by default)
        "WEBHOOKS_RETRY_BASE_SECONDS": "0.5",
        "WEBHOOKS_RETRY_MAX_SECONDS": "4",
        "RECORDINGS_DIR": recordings_dir,
        "RECORDINGS_RETRY_BASE_SECONDS": "0.1",
        "RECORDINGS_RETRY_MAX_SECONDS": "0.5",
        "JWT_SECRET": JWT_SECRET,
        "TWILIO_ACCOUNT_SID": SIM_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": SIM_AUTH_TOKEN,
        "TWILIO_API_URL": f"http://127.0.0.1:{ports['simulator']}",
        "SIM_ACCOUNT_SID": SIM_ACCOUNT_SID,
        "SIM_AUTH_TOKEN": SIM_AUTH_TOKEN,
        "SIM_RING_SECONDS": "0.2",
        "SIM_TALK_SECONDS": "0.5",
        "DIALER_CPS": "20",
        "DIALER_AMBIGUOUS_SAFE_DELAY": "5",
        "DIALER_STALE_AFTER_SECONDS": "2",
        # a call found in progress when asked is asked again this often (300 s by default)
        "DIALER_IN_PROGRESS_CHECK_SECONDS": "4",
        # a recorded call's recording callback is waited for this long (300 s by default)
        "DIALER_RECORDING_GRACE_SECONDS": "2",
        # due dials per organization sampled every second (15 s by default): the monitoring
        # test must see them while a batch is being dialed
        "DIALER_BACKLOG_SAMPLE_SECONDS": "1",
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }


def start_system(
    database_url: str, amqp_url: str, recordings_dir: str, *, name_prefix: str = ""
) -> System:
    """Every service as a real process on free ports: migrated first, as `make up` does, so
    services don't race to create schemas. Stop it with `stop_system`."""
    ports = {
        n: free_port()
        for n in ("gateway", "call_log", "dialer", "recordings", "webhooks", "simulator")
    }
    env = system_env(database_url, amqp_url, ports, recordings_dir)
    modules = {
        "simulator": ("carrier_sim", "simulator"),
        "call-log": ("call_log", "call_log"),
        "gateway": ("gateway", "gateway"),
        "dialer": ("dialer", "dialer"),
        "recordings": ("recordings", "recordings"),
        "webhooks": ("webhooks", "webhooks"),
    }
    system = System(
        {
            name: Service(f"{name_prefix}{name}", module, ports[port], env)
            for name, (module, port) in modules.items()
        }
    )
    for module in ("gateway", "dialer", "call_log", "recordings", "webhooks"):
        subprocess.run(
            [sys.executable, "-m", module, "migrate"], env={**os.environ, **env}, check=True
        )
    for service in system.services.values():
        service.start()
    return system


def stop_system(system: System) -> None:
    for service in system.services.values():
        service.close()


@pytest.fixture(scope="session")
def system_services(
    database_factory: Any, amqp_factory: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    # a vhost of its own: the in-process suites' relays must not feed these services
    system = start_system(
        database_factory("e2e"), amqp_factory("e2e"), str(tmp_path_factory.mktemp("recordings"))
    )
    yield system
    stop_system(system)


@pytest.fixture(scope="session")
async def system(system_services: System) -> System:
    for service in system_services.services.values():
        await wait_ready(service.url)
    return system_services


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
