"""The whole system as real processes (the same entry points `make up` runs), on free ports,
migrated first as `make up` does so that services don't race to create schemas.

One implementation for the end-to-end tests (tests/conftest.py), the fault-injection suite
(tests/chaos/harness.py) and the benchmarks (bench/harness.py); what only some of them need is
an option: more than one dialer, per-service environment overrides, where the logs go, and on
the running system kill -9, stop and restart of one service.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
from carrier_sim.client import SimulatorClient
from carrier_sim.config import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

SIM_ACCOUNT_SID = DEFAULT_ACCOUNT_SID
SIM_AUTH_TOKEN = DEFAULT_AUTH_TOKEN
JWT_SECRET = "e2e-test-secret-that-is-long-enough-for-hs256"
LOGS = Path(os.environ.get("E2E_LOG_DIR", "/tmp")) / "calls-e2e-logs"

# the services' modules, in start order, by the system's name for each
MODULES = {
    "simulator": "carrier_sim",
    "call-log": "call_log",
    "gateway": "gateway",
    "recordings": "recordings",
    "webhooks": "webhooks",
    "dialer": "dialer",
}
MIGRATED = ("gateway", "dialer", "call_log", "recordings", "webhooks")
# the outbox relay as a process of its own (start_system(..., relay_process=True))
RELAY_MODULE = "calls_platform.relay"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(url: str, seconds: float = 60) -> None:
    """Until `url`/readyz answers 200."""
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


@dataclass
class Service:
    """One service as a process (`python -m module`), its output appended to its log."""

    name: str
    module: str
    port: int
    env: dict[str, str]
    log_dir: Path = LOGS
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.log is None:
            self.log = open(self.log_dir / f"{self.name}.log", "ab")  # noqa: SIM115 (close())
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

    def kill(self) -> float:
        """kill -9; returns when it happened (time.time())."""
        assert self.process is not None, f"{self.name} was never started"
        assert self.process.poll() is None, f"{self.name} is not running"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        return time.time()


TokenIssuer = Callable[[str, str], str]
"""`issue(organization_id, subject)`: a bearer token the gateway accepts (the kit imports no
service: the end-to-end suite passes the gateway's own issuer)."""


@dataclass
class System:
    services: dict[str, Service] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path = LOGS
    issue_token: TokenIssuer | None = None

    @property
    def gateway(self) -> str:
        return self.services["gateway"].url

    @property
    def simulator(self) -> str:
        return self.services["simulator"].url

    def token(self, org: str, sub: str = "e2e") -> str:
        assert self.issue_token is not None, "start_system(..., issue_token=…) to make tokens"
        return self.issue_token(org, sub)

    def auth(self, org: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(org)}"}

    def service(self, name: str) -> Service:
        return self.services[name]

    def sim(self, http: aiohttp.ClientSession) -> SimulatorClient:
        """The system's carrier simulator, through its control client."""
        return SimulatorClient(
            http,
            self.simulator,
            account_sid=self.env.get("SIM_ACCOUNT_SID", SIM_ACCOUNT_SID),
            auth_token=self.env.get("SIM_AUTH_TOKEN", SIM_AUTH_TOKEN),
        )

    async def ready(self, *names: str, seconds: float = 60) -> None:
        """Until the named services (all by default) are ready."""
        for name in names or tuple(self.services):
            await wait_ready(self.services[name].url, seconds)

    def kill(self, name: str) -> float:
        """kill -9 a service; returns when it happened (time.time())."""
        return self.service(name).kill()

    def stop(self, name: str) -> None:
        self.service(name).stop()

    async def restart(self, name: str) -> None:
        self.service(name).start()
        await self.ready(name)

    def log_lines(self, name: str) -> list[str]:
        path = self.services[name].log_dir / f"{self.services[name].name}.log"
        return path.read_text(errors="replace").splitlines() if path.exists() else []


def system_env(
    database_url: str, amqp_url: str, ports: Mapping[str, int], recordings_dir: str
) -> dict[str, str]:
    """Every service's settings for a system on `ports` (keyed gateway, call_log, dialer,
    recordings, webhooks, simulator): quick calls, quick retries, short grace periods."""
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


def migrate(env: Mapping[str, str], *, quiet: bool = False) -> None:
    """`python -m <service> migrate` for every service that owns a schema, as `make up` does."""
    for module in MIGRATED:
        subprocess.run(
            [sys.executable, "-m", module, "migrate"],
            env={**os.environ, **env},
            check=True,
            capture_output=quiet,
        )


def prepare_system(
    database_url: str,
    amqp_url: str,
    recordings_dir: str,
    *,
    name_prefix: str = "",
    extra_env: Mapping[str, str] | None = None,
    service_env: Mapping[str, Mapping[str, str]] | None = None,
    dialers: int = 1,
    relay_process: bool = False,
    migrate_first: bool = True,
    log_dir: Path = LOGS,
    quiet_migrate: bool = False,
    issue_token: TokenIssuer | None = None,
) -> System:
    """Every service as a process on free ports, configured and (with `migrate_first`)
    migrated, none started yet: start them with `start_services`, or one by one with
    `system.restart(name)`. Options:

    - `extra_env`: settings for every service on top of `system_env`'s;
    - `service_env`: settings for one service only, by its name ("dialer", "gateway", …);
    - `dialers`: that many dialer replicas ("dialer" alone, else "dialer-a", "dialer-b", …);
    - `relay_process`: the outbox relay runs as a process of its own (`relay`, python -m
      calls_platform.relay, RELAY_IN_PROCESS=false) instead of inside the services;
    - `migrate_first`: False leaves migrating to each service as it starts (MIGRATE_ON_START);
    - `log_dir`, `name_prefix`: where each service's log goes, as `<prefix><name>.log`;
    - `issue_token`: how `system.auth(org)` makes a bearer token for the gateway.
    """
    names = ("gateway", "call_log", "dialer", "recordings", "webhooks", "simulator")
    ports = {n: free_port() for n in names}
    env = {**system_env(database_url, amqp_url, ports, recordings_dir), **(extra_env or {})}
    if relay_process:
        env["RELAY_IN_PROCESS"] = "false"
    overrides = service_env or {}
    port_of = {"simulator": "simulator", "call-log": "call_log", "gateway": "gateway"}
    port_of |= {"recordings": "recordings", "webhooks": "webhooks", "dialer": "dialer"}
    services: dict[str, Service] = {}
    for name, module in MODULES.items():
        if name == "dialer" and dialers != 1:
            continue
        own = {**env, **overrides.get(name, {})}
        services[name] = Service(f"{name_prefix}{name}", module, ports[port_of[name]], own, log_dir)
    if dialers != 1:
        for index in range(dialers):
            name = f"dialer-{'abcdefgh'[index]}"
            port = ports["dialer"] if index == 0 else free_port()
            own = {**env, **overrides.get("dialer", {}), **overrides.get(name, {})}
            own["DIALER_PORT"] = str(port)
            services[name] = Service(f"{name_prefix}{name}", "dialer", port, own, log_dir)
    if relay_process:
        port = free_port()
        own = {**env, **overrides.get("relay", {}), "RELAY_PORT": str(port)}
        services["relay"] = Service(f"{name_prefix}relay", RELAY_MODULE, port, own, log_dir)
    system = System(services, env, log_dir, issue_token)
    if migrate_first:
        migrate(env, quiet=quiet_migrate)
    return system


def start_services(system: System) -> System:
    """Start every service of a prepared system (returns at once; wait with
    `await system.ready()`); on failure the started ones are stopped."""
    try:
        for service in system.services.values():
            service.start()
    except BaseException:
        stop_system(system)
        raise
    return system


def start_system(
    database_url: str,
    amqp_url: str,
    recordings_dir: str,
    *,
    name_prefix: str = "",
    extra_env: Mapping[str, str] | None = None,
    service_env: Mapping[str, Mapping[str, str]] | None = None,
    dialers: int = 1,
    relay_process: bool = False,
    migrate_first: bool = True,
    log_dir: Path = LOGS,
    quiet_migrate: bool = False,
    issue_token: TokenIssuer | None = None,
) -> System:
    """Every service as a real process on free ports, migrated first (`prepare_system` names
    the options), all started. Returns at once (wait with `await system.ready()`); stop it
    with `stop_system`."""
    return start_services(
        prepare_system(
            database_url,
            amqp_url,
            recordings_dir,
            name_prefix=name_prefix,
            extra_env=extra_env,
            service_env=service_env,
            dialers=dialers,
            relay_process=relay_process,
            migrate_first=migrate_first,
            log_dir=log_dir,
            quiet_migrate=quiet_migrate,
            issue_token=issue_token,
        )
    )


def stop_system(system: System, *, timeout: float = 30) -> None:
    """SIGTERM every service (SIGKILL after `timeout`) and close its log."""
    for service in system.services.values():
        service.stop(timeout=timeout)
        service.close()
