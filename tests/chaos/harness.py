"""The fault-injection suite's machinery: private PostgreSQL and RabbitMQ instances (so that
restarting them harms nobody else), the whole system as real processes, the workload, and the
checks every scenario ends with.

Every scenario gets a system of its own (own database, vhost or broker, simulator), so
everything in its event store, its read model and its simulator belongs to that scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import aiohttp
import psycopg
from calls_events import TERMINAL_CALL_STATUSES, is_placeholder_call_sid
from calls_testing.system import (
    System,
    SystemOptions,
    free_port,
    prepare_system,
    start_system,
    stop_system,
)
from carrier_sim.client import SimCall, SimState
from psycopg.rows import dict_row

from tests.conftest import gateway_token

CPS = 20  # DIALER_CPS of every chaos system: 200 calls take 10 s to dial
BATCH_SIZE = 200
FROM_NUMBER = "+14155550199"
TERMINAL = TERMINAL_CALL_STATUSES
CARRIER_TERMINAL = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
LOG_ROOT = Path(os.environ.get("CHAOS_LOG_DIR", "/tmp/calls-chaos-logs"))
PG_BIN = Path(os.environ.get("CHAOS_PG_BIN", "/usr/lib/postgresql/15/bin"))


def chaos_env() -> dict[str, str]:
    """Settings that keep a scenario short: fast pacing, short calls, quick timeouts."""
    return {
        "DIALER_CPS": str(CPS),
        "SIM_RING_SECONDS": "0.2",
        "SIM_TALK_SECONDS": "0.5",
        "TWILIO_TIMEOUT_SECONDS": "2",
        "DIALER_AMBIGUOUS_SAFE_DELAY": "3",
        "DIALER_STALE_AFTER_SECONDS": "4",
        "DIALER_IN_PROGRESS_CHECK_SECONDS": "4",
        "LOG_LEVEL": "INFO",
    }


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _owned_tempdir(prefix: str, owner: str) -> Path:
    """A temporary directory the server's own user can write (servers refuse to run as root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if _as_root():
        shutil.chown(path, owner, owner)
    return path


# --- private servers --------------------------------------------------------------------


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port, which a scenario may restart."""

    def __init__(self) -> None:
        self.root = _owned_tempdir("calls-chaos-pg-", "postgres")
        self.port = free_port()
        self.data = self.root / "data"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if _as_root():
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, cwd=self.root)

    @property
    def _options(self) -> str:
        # fsync off: a scenario kills server processes, never the machine, so the page cache
        # survives and nothing committed is lost; it keeps the suite fast on a shared disk
        return (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c max_connections=300"
        )

    def start(self) -> None:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N")
        self._pg_ctl("start")

    def _pg_ctl(self, action: str, mode: str = "fast") -> None:
        self._run(
            "pg_ctl",
            action,
            "-D",
            str(self.data),
            "-m",
            mode,
            "-w",
            "-t",
            "60",
            "-o",
            self._options,
            "-l",
            str(self.root / "server.log"),
        )

    def restart(self) -> None:
        self._pg_ctl("restart")

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


def have_postgres_binaries() -> bool:
    return (PG_BIN / "initdb").exists()


@contextlib.contextmanager
def running_postgres() -> Iterator[PrivatePostgres]:
    """A private cluster, started; stopped and removed after."""
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def private_databases(fallback: Callable[[str], str]) -> Iterator[Callable[[str], str]]:
    """Databases on a cluster of their own when the server binaries are here (a system's
    processes open dozens of connections: on the shared server, busy with others' tests, they
    were refused with `too many clients`), else from `fallback` (the shared server)."""
    if not have_postgres_binaries():
        yield fallback
        return
    with running_postgres() as server:
        yield lambda label: server.create_database(f"calls_{label}")


class PrivateRabbit:
    """A RabbitMQ node of its own (own name, ports, data and config), which a scenario may
    stop and start. The shared broker on 5672 is never touched."""

    def __init__(self, run_id: str) -> None:
        self.node = f"chaos-{run_id}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.root = _owned_tempdir("calls-chaos-rmq-", "rabbitmq")
        plugins = self.root / "enabled_plugins"
        plugins.write_text("[].\n")
        config = self.root / "rabbitmq.conf"
        config.write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        if _as_root():
            for path in (plugins, config):
                shutil.chown(path, "rabbitmq", "rabbitmq")
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_PID_FILE": str(self.root / "pid"),
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def ctl(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {result.stderr or result.stdout}")
        return result.stdout

    def _await_app(self, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["rabbitmqctl", "-q", "-n", self.node, "await_startup", "--timeout", "10"],
                env=self.env,
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.5)
        raise TimeoutError(f"RabbitMQ node {self.node} did not start (logs in {self.root})")

    def start(self) -> None:
        subprocess.run(
            ["rabbitmq-server", "-detached"],
            env=self.env,
            cwd=self.root,
            check=True,
            capture_output=True,
        )
        self._await_app()

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self._await_app()

    def queues(self) -> dict[str, tuple[int, int]]:
        return parse_queues(self.ctl(*LIST_QUEUES))

    def stop(self) -> None:
        self.ctl("stop", check=False)
        pid_file = self.root / "pid"
        if pid_file.exists():  # not stopped by rabbitmqctl: make sure
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


# the rabbitmqctl command (after its options) whose output parse_queues reads
LIST_QUEUES: Final = (
    "list_queues",
    "name",
    "messages_ready",
    "messages_unacknowledged",
    "--no-table-headers",
)


def parse_queues(output: str) -> dict[str, tuple[int, int]]:
    queues = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            queues[parts[0]] = (int(parts[1]), int(parts[2]))
    return queues


def shared_vhost_queues(vhost: str) -> dict[str, tuple[int, int]]:
    result = subprocess.run(
        ["rabbitmqctl", "-q", "-p", vhost, *LIST_QUEUES],
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_queues(result.stdout)


# --- the system -------------------------------------------------------------------------


Queues = Callable[[], dict[str, tuple[int, int]]]
"""Each RabbitMQ queue of a system's broker or vhost: (ready, unacknowledged) messages."""


def no_queues() -> dict[str, tuple[int, int]]:
    return {}


@dataclass
class ChaosSystem(System):
    """The whole system as processes (calls_testing.system), plus how the checks look into
    its broker."""

    queues: Queues = no_queues

    def close(self) -> None:
        stop_system(self, timeout=10)


async def chaos_system(
    database_url: str,
    amqp_url: str,
    scenario: str,
    *,
    queues: Queues = no_queues,
    started: bool = True,
    migrate: bool = True,
    dialers: int = 1,
    extra_env: dict[str, str] | None = None,
    relay_process: bool = False,
) -> ChaosSystem:
    """The system for a scenario (calls_testing.system), with the chaos settings, its logs in
    a directory of the scenario's own: configured, (with `migrate`) migrated and (with
    `started`) every service started and ready. Not started, the scenario starts each one
    with `chaos.restart(name)`. With `relay_process`, the outbox relay runs as a process of
    its own (`relay`, python -m calls_platform.relay) instead of inside the services."""
    log_dir = LOG_ROOT / f"{time.strftime('%Y%m%d-%H%M%S')}-{scenario}"
    log_dir.mkdir(parents=True, exist_ok=True)
    recordings = log_dir / "recordings"
    recordings.mkdir()
    options = SystemOptions(
        extra_env={**chaos_env(), **(extra_env or {})},
        dialers=dialers,
        relay_process=relay_process,
        migrate_first=migrate,
        log_dir=log_dir,
        quiet_migrate=True,
        issue_token=gateway_token,
    )
    prepared = await asyncio.to_thread(
        prepare_system, database_url, amqp_url, str(recordings), options
    )
    chaos = ChaosSystem(prepared.services, prepared.env, log_dir, gateway_token, queues)
    if started:
        try:
            await asyncio.to_thread(start_system, chaos)
            await chaos.ready()
        except BaseException:
            chaos.close()
            raise
    return chaos


MakeSystem = Callable[..., Awaitable[ChaosSystem]]
"""The `make_system` fixture: `await make_system("scenario", postgres=…, rabbit=…, dialers=…,
started=…, …)`: `chaos_system` on the suite's servers."""


# --- workload ---------------------------------------------------------------------------


def numbers(n: int) -> list[str]:
    prefix = str(uuid.uuid4().int)[:4]
    return [f"+1650{prefix}{i:03d}" for i in range(n)]


async def post_until_accepted(
    http: aiohttp.ClientSession,
    chaos: ChaosSystem,
    path: str,
    body: dict[str, Any],
    org: str,
    *,
    seconds: float = 60,
) -> dict[str, Any]:
    """POST with an Idempotency-Key, retrying through outages until it is accepted: a retry
    of a request whose 202 was lost must not create a second call."""
    headers = {**chaos.auth(org), "Idempotency-Key": uuid.uuid4().hex}
    deadline = time.monotonic() + seconds
    last = ""
    while time.monotonic() < deadline:
        try:
            async with http.post(f"{chaos.gateway}{path}", json=body, headers=headers) as r:
                if r.status == 202:
                    accepted: dict[str, Any] = await r.json()
                    return accepted
                last = f"{r.status} {await r.text()}"
                assert r.status >= 500 or r.status == 429, last  # never a 4xx for a good body
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = repr(exc)
        await asyncio.sleep(0.3)
    raise TimeoutError(f"POST {path} not accepted in {seconds}s: {last}")


@dataclass
class Workload:
    """What a scenario asked for, by the API's own answers."""

    org: str
    batch_ids: list[str] = field(default_factory=list)
    single_ids: list[str] = field(default_factory=list)
    expected_calls: int = 0

    async def batch(
        self, http: aiohttp.ClientSession, chaos: ChaosSystem, to_numbers: list[str]
    ) -> str:
        """Batches are not recorded (less work for a shared two-core machine); single calls
        are, so the recordings service takes its part in every scenario."""
        accepted = await post_until_accepted(
            http,
            chaos,
            "/calls/batch",
            {"to_numbers": to_numbers, "from_number": FROM_NUMBER, "record": False},
            self.org,
        )
        self.batch_ids.append(accepted["batch_id"])
        self.expected_calls += int(accepted["total"])
        return str(accepted["batch_id"])

    async def single(
        self,
        http: aiohttp.ClientSession,
        chaos: ChaosSystem,
        to_number: str | None = None,
        *,
        record: bool = True,
    ) -> str:
        """One call (to a number of its own unless given), retried until accepted."""
        body: dict[str, Any] = {"to_number": to_number or numbers(1)[0], "from_number": FROM_NUMBER}
        if not record:
            body["record"] = False
        accepted = await post_until_accepted(http, chaos, "/calls", body, self.org)
        self.single_ids.append(accepted["call_id"])
        self.expected_calls += 1
        return str(accepted["call_id"])

    def accepted(self, call_id: str) -> None:
        """A single call the scenario posted itself (not by `single`)."""
        self.single_ids.append(call_id)
        self.expected_calls += 1


async def start_batch(
    http: aiohttp.ClientSession,
    chaos: ChaosSystem,
    workload: Workload,
    *,
    dialed: int = BATCH_SIZE // 3,
) -> int:
    """The opening of a mid-batch scenario: a single call and a batch of BATCH_SIZE, until the
    carrier has seen `dialed` calls created (the moment for the fault); how many it has seen."""
    await workload.single(http, chaos)
    await workload.batch(http, chaos, numbers(BATCH_SIZE))
    return len(await wait_for_dials(http, chaos, dialed))


async def sim_calls(http: aiohttp.ClientSession, chaos: ChaosSystem) -> SimState:
    return await chaos.sim(http).state()


async def set_faults(
    http: aiohttp.ClientSession, chaos: ChaosSystem, faults: dict[str, Any]
) -> None:
    await chaos.sim(http).set_faults(**faults)


async def post_calls(
    http: aiohttp.ClientSession, chaos: ChaosSystem, org: str, count: int
) -> list[str]:
    """`count` calls, each of which the gateway must accept at once (202); their ids."""
    accepted = []
    for to_number in numbers(count):
        async with http.post(
            f"{chaos.gateway}/calls",
            json={"to_number": to_number, "from_number": FROM_NUMBER},
            headers=chaos.auth(org),
        ) as r:
            assert r.status == 202, await r.text()
            accepted.append((await r.json())["call_id"])
    return accepted


async def dials_by_call(
    http: aiohttp.ClientSession, chaos: ChaosSystem, count: int, seconds: float
) -> Counter[str | None]:
    """How often the carrier was asked to create each call, once it has seen `count` created
    (or `seconds` passed) and a second more, in which a second dial of any would show."""
    deadline = time.monotonic() + seconds
    while len((await sim_calls(http, chaos))["calls"]) < count:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    return Counter(_call_id_of(d) for d in (await sim_calls(http, chaos))["calls"])


async def wait_for_dials(
    http: aiohttp.ClientSession, chaos: ChaosSystem, count: int, seconds: float = 60
) -> list[SimCall]:
    """Wait until the simulator has seen at least `count` calls created."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        calls = (await sim_calls(http, chaos))["calls"]
        if len(calls) >= count:
            return calls
        await asyncio.sleep(0.1)
    raise TimeoutError(f"fewer than {count} dials after {seconds}s")


async def until(
    condition: Callable[[], Awaitable[bool]], seconds: float, what: str, every: float = 0.2
) -> float:
    """Wait for `condition`; return how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if await condition():
            return time.monotonic() - started
        await asyncio.sleep(every)
    raise TimeoutError(f"{what}: not within {seconds}s")


# --- the checks ---------------------------------------------------------------------------


def _call_id_of(dial: SimCall) -> str | None:
    callback = dial.get("status_callback") or ""
    values = parse_qs(urlsplit(callback).query).get("call_id")
    return values[0] if values else None


@dataclass
class Report:
    """What the checks saw, for scenario-specific assertions."""

    calls: dict[str, dict[str, Any]]
    events: list[dict[str, Any]]
    dials: list[SimCall]
    create_requests: int
    settle_seconds: float

    def initiated_sources(self) -> Counter[str]:
        return Counter(
            e["data"]["source"] for e in self.events if e["event_type"] == "CallInitiated"
        )

    def reports_by_source(self) -> Counter[str]:
        return Counter(
            e["data"].get("source", "callback")
            for e in self.events
            if e["event_type"] == "CallStatusReported"
        )


async def _fetch(database_url: str, query: str) -> list[dict[str, Any]]:
    conn = await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row)
    async with conn:
        cur = await conn.execute(query)
        return list(await cur.fetchall())


async def _settled(chaos: ChaosSystem, expected_calls: int) -> tuple[bool, str]:
    """Whether the system has come to rest: every call terminal in the read model, the relay
    and projector at the head of the store, and every queue empty."""
    url = chaos.database_url
    try:
        rows = await _fetch(
            url,
            "SELECT (SELECT count(*) FROM call_log.calls) AS calls,"
            " (SELECT count(*) FROM call_log.calls WHERE status IN"
            "  ('completed', 'failed', 'canceled')) AS terminal,"
            # the store is read in (transaction_id, position) order: a reader is at the head
            # when its checkpoint is the last event in that order
            " (SELECT (transaction_id, position)::text FROM eventstore.events"
            "  ORDER BY transaction_id DESC, position DESC LIMIT 1) AS head,"
            " (SELECT (transaction_id, position)::text FROM eventstore.checkpoints"
            "  WHERE name = 'amqp-relay') AS relayed,"
            " (SELECT (transaction_id, position)::text FROM call_log.checkpoints"
            "  WHERE name = 'calls') AS projected,"
            " (SELECT count(*) FROM dialer.dials WHERE state IN ('pending', 'dialing'))"
            "  AS dialer_open,"
            " (SELECT count(*) FROM recordings.recordings WHERE state = 'pending')"
            "  AS recordings_open",
        )
    except psycopg.OperationalError as exc:
        return False, f"database: {exc}"
    row = rows[0]
    queues = chaos.queues()
    busy = {name: counts for name, counts in queues.items() if counts != (0, 0)}
    state = (
        f"calls {row['calls']}/{expected_calls}, terminal {row['terminal']}, head {row['head']},"
        f" relayed {row['relayed']}, projected {row['projected']},"
        f" dialer open {row['dialer_open']}, recordings open {row['recordings_open']},"
        f" queues not empty {busy}"
    )
    done = (
        row["calls"] == expected_calls
        and row["terminal"] == expected_calls
        and row["head"] == row["relayed"] == row["projected"]
        and row["dialer_open"] == 0
        and row["recordings_open"] == 0
        and not busy
        and bool(queues)
    )
    return done, state


async def settle(chaos: ChaosSystem, expected_calls: int, seconds: float = 120) -> float:
    """Wait until the system is at rest twice in a row, a second apart."""
    started = time.monotonic()
    state = ""
    streak = 0
    while time.monotonic() - started < seconds:
        done, state = await _settled(chaos, expected_calls)
        streak = streak + 1 if done else 0
        if streak >= 2:
            return time.monotonic() - started
        await asyncio.sleep(1.0)
    raise AssertionError(f"system did not come to rest within {seconds}s: {state}")


_READ_MODEL_QUERIES = {
    "calls": "SELECT * FROM call_log.calls ORDER BY call_id",
    "batches": "SELECT * FROM call_log.batches ORDER BY batch_id",
    # a live projector may leave zero rows behind where a rebuild never creates them
    "counts": "SELECT * FROM call_log.call_counts WHERE calls <> 0"
    " ORDER BY organization_id, direction, status, outcome",
}


async def _read_model(database_url: str) -> dict[str, list[dict[str, Any]]]:
    return {name: await _fetch(database_url, query) for name, query in _READ_MODEL_QUERIES.items()}


def rebuild_read_model(chaos: ChaosSystem) -> None:
    """`python -m call_log rebuild`: empty the read model and replay the whole event store."""
    subprocess.run(
        [sys.executable, "-m", "call_log", "rebuild"],
        env={**os.environ, **chaos.env},
        check=True,
        capture_output=True,
    )


async def verify(
    http: aiohttp.ClientSession,
    chaos: ChaosSystem,
    workload: Workload,
    *,
    settle_seconds: float = 120,
) -> Report:
    """The invariants every scenario must end with:

    - every accepted call is in the store and the read model, and ends in exactly one terminal
      state (one dialer verdict at most, one terminal carrier status at most, never both a
      dialer failure and a carrier call);
    - every call was dialed at most once at the carrier, exactly once if it has a SID (the
      SID the carrier gave), never if it failed or was canceled before dialing;
    - nothing is left: relay checkpoint and projector at the store's head, no pending or
      dialing dial, every queue (dead letters included) empty, ready and unacked;
    - the read model equals a fresh rebuild from the event store.
    """
    took = await settle(chaos, workload.expected_calls, settle_seconds)
    url = chaos.database_url
    events = await _fetch(
        url,
        "SELECT position, event_type, stream_id, data FROM eventstore.events ORDER BY position",
    )
    calls = {str(row["call_id"]): row for row in await _fetch(url, "SELECT * FROM call_log.calls")}
    simulator = await sim_calls(http, chaos)
    dials = simulator["calls"]

    # every accepted call is known, once
    requested = [e["data"]["call_id"] for e in events if e["event_type"] == "CallRequested"]
    assert len(requested) == len(set(requested)) == workload.expected_calls
    assert set(requested) == set(calls)
    assert set(workload.single_ids) <= set(calls)
    batch_calls = Counter(
        e["data"].get("batch_id") for e in events if e["event_type"] == "CallRequested"
    )
    for batch_id in workload.batch_ids:
        assert batch_calls[batch_id] > 0
    # a batch carries its calls; each got its own stream, opened by the dialer, once
    carried = [
        c["call_id"]
        for e in events
        if e["event_type"] == "BatchRequested"
        for c in e["data"].get("calls", [])
    ]
    assert set(carried) <= set(requested), set(carried) - set(requested)

    # exactly one terminal state per call
    verdicts: dict[str, list[str]] = defaultdict(list)
    carrier_terminal: dict[str, set[str]] = defaultdict(set)
    for e in events:
        call_id = e["data"].get("call_id")
        if e["event_type"] in ("CallInitiated", "CallFailed", "CallCanceled"):
            verdicts[call_id].append(e["event_type"])
        elif (
            e["event_type"] == "CallStatusReported"
            and e["data"]["carrier_status"] in CARRIER_TERMINAL
        ):
            carrier_terminal[call_id].add(e["data"]["carrier_status"])
    for call_id, view in calls.items():
        assert view["status"] in TERMINAL, (call_id, view["status"])
        assert len(verdicts[call_id]) == 1, (call_id, verdicts[call_id])
        assert len(carrier_terminal[call_id]) <= 1, (call_id, carrier_terminal[call_id])
        if verdicts[call_id] == ["CallInitiated"]:
            assert len(carrier_terminal[call_id]) == 1, (call_id, "no terminal carrier status")
        else:
            assert not carrier_terminal[call_id], (call_id, verdicts[call_id])

    # each call dialed at most once: exactly once if the carrier has it
    dialed: dict[str, list[str]] = defaultdict(list)
    for dial in dials:
        call_id = _call_id_of(dial)
        assert call_id is not None, dial
        dialed[call_id].append(dial["sid"])
    assert set(dialed) <= set(calls), set(dialed) - set(calls)
    twice = {call_id: sids for call_id, sids in dialed.items() if len(sids) > 1}
    assert not twice, f"dialed more than once: {twice}"
    for call_id, view in calls.items():
        # the call log shows the `queued-…` placeholder until the carrier gave a SID (#13)
        if not is_placeholder_call_sid(view["call_sid"]):
            assert dialed[call_id] == [view["call_sid"]], (call_id, view["call_sid"])
        else:
            assert not dialed[call_id], (call_id, "dialed, but the call has no SID")

    # the read model equals a fresh rebuild from the event store
    chaos.stop("call-log")
    live = await _read_model(url)
    await asyncio.to_thread(rebuild_read_model, chaos)
    rebuilt = await _read_model(url)
    for table in _READ_MODEL_QUERIES:
        assert len(live[table]) == len(rebuilt[table]), table
        for before, after in zip(live[table], rebuilt[table], strict=True):
            assert before == after, (table, before, after)
    assert len(live["calls"]) == workload.expected_calls

    return Report(calls, events, dials, int(simulator["create_requests"]), took)
