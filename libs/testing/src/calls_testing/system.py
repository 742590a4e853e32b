"""The whole system as real processes (the same entry points `make up` runs), on free ports,
migrated first as `make up` does so that services don't race to create schemas.

One implementation for the end-to-end tests (tests/conftest.py), the fault-injection suite
(tests/chaos/harness.py) and the benchmarks (bench/harness.py); what only some of them need is
an option (`SystemOptions`): which services, more than one dialer, per-service environment
overrides, the tests' quick tunables or the services' defaults, where the logs go; and on the
running system kill -9, stop and restart of one service.

    system = start_system(prepare_system(database_url, amqp_url, recordings_dir, options))
    await system.ready()
    ...
    stop_system(system)
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
from typing import IO, Any

import aiohttp
import psycopg
from carrier_sim.client import SimulatorClient
from carrier_sim.config import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from psycopg.rows import dict_row

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
# the outbox relay as a process of its own (SystemOptions(relay_process=True))
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

    @property
    def database_url(self) -> str:
        return self.env["DATABASE_URL"]

    async def query(self, query: str, *params: object) -> list[dict[str, Any]]:
        """Rows of one query against the system's database, as dicts: for tests that look at
        what a service recorded where the API does not show it."""
        async with await psycopg.AsyncConnection.connect(
            self.database_url, row_factory=dict_row
        ) as conn:
            cur = await conn.execute(query, params)
            return list(await cur.fetchall())

    def token(self, org: str, sub: str = "e2e") -> str:
        assert self.issue_token is not None, "SystemOptions(issue_token=…) to make tokens"
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
    """Every service's wiring for a system on `ports` (keyed gateway, call_log, dialer,
    recordings, webhooks, simulator, relay): where the others are, the simulator's credentials,
    the gateway's JWT secret."""
    return {
        "DATABASE_URL": database_url,
        "AMQP_URL": amqp_url,
        "GATEWAY_PORT": str(ports["gateway"]),
        "CALL_LOG_PORT": str(ports["call_log"]),
        "DIALER_PORT": str(ports["dialer"]),
        "RECORDINGS_PORT": str(ports["recordings"]),
        "WEBHOOKS_PORT": str(ports["webhooks"]),
        "SIM_PORT": str(ports["simulator"]),
        "RELAY_PORT": str(ports["relay"]),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{ports['gateway']}",
        "CALL_LOG_URL": f"http://127.0.0.1:{ports['call_log']}",
        "RECORDINGS_URL": f"http://127.0.0.1:{ports['recordings']}",
        "WEBHOOKS_URL": f"http://127.0.0.1:{ports['webhooks']}",
        "RECORDINGS_DIR": recordings_dir,
        "JWT_SECRET": JWT_SECRET,
        "TWILIO_ACCOUNT_SID": SIM_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": SIM_AUTH_TOKEN,
        "TWILIO_API_URL": f"http://127.0.0.1:{ports['simulator']}",
        "SIM_ACCOUNT_SID": SIM_ACCOUNT_SID,
        "SIM_AUTH_TOKEN": SIM_AUTH_TOKEN,
        "SIM_RING_SECONDS": "0.2",
        "SIM_TALK_SECONDS": "0.5",
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }


QUICK_ENV = {
    # the tests' receivers listen on 127.0.0.1, over plain HTTP
    "WEBHOOKS_ALLOW_PRIVATE": "true",
    # retries after about 0.5 s, 1 s, 2 s, ... up to 4 s (5 s, doubling to an hour, by default)
    "WEBHOOKS_RETRY_BASE_SECONDS": "0.5",
    "WEBHOOKS_RETRY_MAX_SECONDS": "4",
    "RECORDINGS_RETRY_BASE_SECONDS": "0.1",
    "RECORDINGS_RETRY_MAX_SECONDS": "0.5",
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
    # several systems share the test server's max_connections (100 here): small pools, and
    # connections a burst opened are closed again soon
    "PG_POOL_MAX_SIZE": "8",
    "PG_POOL_MAX_IDLE_SECONDS": "20",
}
"""The tests' tunables: quick calls, quick retries, short grace periods (`SystemOptions.quick`;
the benchmarks measure the services' own defaults)."""


def migrate(env: Mapping[str, str], *, quiet: bool = False) -> None:
    """`python -m <service> migrate` for every service that owns a schema, as `make up` does."""
    for module in MIGRATED:
        subprocess.run(
            [sys.executable, "-m", module, "migrate"],
            env={**os.environ, **env},
            check=True,
            capture_output=quiet,
        )


@dataclass(frozen=True)
class SystemOptions:
    """How `prepare_system` builds a system; every field has the end-to-end suite's default.

    - `extra_env`: settings for every service on top of `system_env`'s (and `QUICK_ENV`'s);
    - `service_env`: settings for one service only, by its name ("dialer", "gateway", …);
    - `services`: only these services, by name (all of them by default);
    - `dialers`: that many dialer replicas ("dialer" alone, else "dialer-a", "dialer-b", …);
    - `relay_process`: the outbox relay runs as a process of its own (`relay`, python -m
      calls_platform.relay, RELAY_IN_PROCESS=false) instead of inside the services;
    - `migrate_first`: False leaves migrating to each service as it starts (MIGRATE_ON_START);
    - `quick`: the tests' tunables (`QUICK_ENV`); False keeps the services' defaults;
    - `log_dir`, `name_prefix`: where each service's log goes, as `<prefix><name>.log`;
    - `quiet_migrate`: the migrations' output captured, not shown;
    - `issue_token`: how `system.auth(org)` makes a bearer token for the gateway;
    - `port_base`: fixed ports from this one on (a port of its own per service) instead of
      free ones.
    """

    extra_env: Mapping[str, str] = field(default_factory=dict)
    service_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    services: tuple[str, ...] | None = None
    dialers: int = 1
    relay_process: bool = False
    migrate_first: bool = True
    quick: bool = True
    log_dir: Path = LOGS
    name_prefix: str = ""
    quiet_migrate: bool = False
    issue_token: TokenIssuer | None = None
    port_base: int | None = None


# the ports' names, in the order of their offsets from `SystemOptions.port_base`
PORT_NAMES = ("gateway", "call_log", "dialer", "recordings", "webhooks", "simulator", "relay")


def prepare_system(
    database_url: str,
    amqp_url: str,
    recordings_dir: str,
    options: SystemOptions = SystemOptions(),
) -> System:
    """Every service as a process on free ports, configured and (unless told otherwise)
    migrated, none started yet: start them with `start_system`, or one by one with
    `system.restart(name)`. `SystemOptions` names the options."""
    if options.port_base is None:
        ports = {n: free_port() for n in PORT_NAMES}
    else:
        ports = {n: options.port_base + i for i, n in enumerate(PORT_NAMES)}
    env = system_env(database_url, amqp_url, ports, recordings_dir)
    env |= {**(QUICK_ENV if options.quick else {}), **options.extra_env}
    if options.relay_process:
        env["RELAY_IN_PROCESS"] = "false"
    overrides = options.service_env
    wanted = options.services or (*MODULES, "relay")
    log_dir, prefix = options.log_dir, options.name_prefix

    def service(name: str, module: str, port: int, *own: Mapping[str, str]) -> Service:
        merged = {**env, **{k: v for o in own for k, v in o.items()}}
        return Service(f"{prefix}{name}", module, port, merged, log_dir)

    services: dict[str, Service] = {}
    for name, module in MODULES.items():
        if name not in wanted or (name == "dialer" and options.dialers != 1):
            continue
        services[name] = service(
            name, module, ports[name.replace("-", "_")], overrides.get(name, {})
        )
    if "dialer" in wanted and options.dialers != 1:
        for index in range(options.dialers):
            name = f"dialer-{'abcdefgh'[index]}"
            port = ports["dialer"] if index == 0 else free_port()
            own = {"DIALER_PORT": str(port)}
            services[name] = service(
                name, "dialer", port, overrides.get("dialer", {}), overrides.get(name, {}), own
            )
    if options.relay_process and "relay" in wanted:
        services["relay"] = service(
            "relay", RELAY_MODULE, ports["relay"], overrides.get("relay", {})
        )
    system = System(services, env, log_dir, options.issue_token)
    if options.migrate_first:
        migrate(env, quiet=options.quiet_migrate)
    return system


def start_system(system: System) -> System:
    """Start every service of a prepared system (returns at once; wait with
    `await system.ready()`; stop it with `stop_system`); on failure the started ones are
    stopped."""
    try:
        for service in system.services.values():
            service.start()
    except BaseException:
        stop_system(system)
        raise
    return system


def stop_system(system: System, *, timeout: float = 30) -> None:
    """SIGTERM every service (SIGKILL after `timeout`) and close its log."""
    for service in system.services.values():
        service.stop(timeout=timeout)
        service.close()
