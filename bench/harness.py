"""What the benchmarks share: a database and a RabbitMQ vhost of their own, the whole system
started as real processes (migration, readiness and the simulator's credentials from
calls_testing.system), percentiles, memory readings, the machine description and the results
file.

    with System("load", port_base=19200, env={"DIALER_CPS": "1"}) as system:
        system.start("carrier_sim", "call_log", "gateway", "dialer")
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from calls_testing.system import SIM_ACCOUNT_SID, SIM_AUTH_TOKEN, migrate, wait_ready
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

JWT_SECRET = "bench-secret-bench-secret-bench-secret-0000"
PG_BASE = "postgresql://postgres@127.0.0.1:5432/"

# port offsets from a system's port base, and the module each port belongs to
PORTS = {
    "gateway": 0,
    "call_log": 1,
    "dialer": 2,
    "recordings": 3,
    "calls_platform.relay": 6,
    "carrier_sim": 10,
}


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def start(module: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `python -m module`; its output goes to $BENCH_LOG_DIR/<module>.log if that is
    set (to see why a service did not become ready), else nowhere."""
    log_dir = os.environ.get("BENCH_LOG_DIR")
    output: Any = subprocess.DEVNULL
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        output = open(Path(log_dir) / f"{module}.log", "ab")  # noqa: SIM115 (the child's)
    return subprocess.Popen(
        [sys.executable, "-m", module],
        env={**os.environ, **env},
        stdout=output,
        stderr=output,
    )


@contextlib.contextmanager
def private_vhost(name: str) -> Iterator[str]:
    """A RabbitMQ vhost of the benchmark's own, so its messages never reach another system's
    consumers on the same broker (and theirs never reach the benchmark's)."""
    base = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        yield base
        return
    subprocess.run([ctl, "-q", "add_vhost", name], check=False, capture_output=True)
    subprocess.run(
        [ctl, "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    try:
        yield base.rstrip("/") + "/" + name
    finally:
        subprocess.run([ctl, "-q", "delete_vhost", name], check=False, capture_output=True)


def prepare_database(url: str, keep: bool) -> bool:
    """Create (or keep) the benchmark database; True if it already holds loaded data."""
    name = str(conninfo_to_dict(url)["dbname"])
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if keep and exists:
            return True
        ident = sql.Identifier(name)
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    return False


def drop_database(url: str) -> None:
    name = str(conninfo_to_dict(url)["dbname"])
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB, from /proc/<pid>/status."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            figures[key] = int(value.split()[0])
    return figures


def machine() -> dict[str, Any]:
    """What the figures were measured on (they mean little without it)."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    pg = "unknown"
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(PG_BASE + "postgres", connect_timeout=3) as conn,
    ):
        row = conn.execute("SHOW server_version").fetchone()
        pg = str(row[0]) if row else pg
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": pg,
        "load_average_at_start": os.getloadavg(),
    }


def write_results(name: str, results: dict[str, Any], out: str = "bench/results") -> Path:
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{name}-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


class System:
    """The whole system as real processes, in a database and a RabbitMQ vhost of its own
    (both named `calls_bench_<name>`, both removed afterwards), on ports from `port_base`."""

    def __init__(self, name: str, *, port_base: int, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.database_url = PG_BASE + f"calls_bench_{name}"
        self.port_base = port_base
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._stack = contextlib.ExitStack()
        self._spool = tempfile.mkdtemp(prefix=f"bench-{name}-")
        self.env = {
            "DATABASE_URL": self.database_url,
            "JWT_SECRET": JWT_SECRET,
            "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            "MIGRATE_ON_START": "false",
            "GATEWAY_PORT": str(self.port("gateway")),
            "CALL_LOG_PORT": str(self.port("call_log")),
            "DIALER_PORT": str(self.port("dialer")),
            "RECORDINGS_PORT": str(self.port("recordings")),
            "SIM_PORT": str(self.port("carrier_sim")),
            "RELAY_PORT": str(self.port("calls_platform.relay")),
            "CALL_LOG_URL": self.url("call_log"),
            "RECORDINGS_URL": self.url("recordings"),
            "RECORDINGS_DIR": self._spool,
            "PUBLIC_BASE_URL": self.url("gateway"),
            "TWILIO_API_URL": self.url("carrier_sim"),
            "TWILIO_ACCOUNT_SID": SIM_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": SIM_AUTH_TOKEN,
            "SIM_RING_SECONDS": "0.2",
            "SIM_TALK_SECONDS": "0.5",
            **(env or {}),
        }

    def port(self, module: str) -> int:
        return self.port_base + PORTS[module]

    def url(self, module: str) -> str:
        return f"http://127.0.0.1:{self.port(module)}"

    def __enter__(self) -> System:
        prepare_database(self.database_url, keep=False)
        self._stack.callback(drop_database, self.database_url)
        self._stack.callback(shutil.rmtree, self._spool, True)
        self.env["AMQP_URL"] = self._stack.enter_context(private_vhost(f"calls_bench_{self.name}"))
        migrate(self.env, quiet=True)
        return self

    def start(self, *modules: str) -> None:
        """Start the modules (in order) and wait until each is ready."""
        for module in modules:
            self.procs[module] = start(module, self.env)
        for module in modules:
            asyncio.run(wait_ready(self.url(module)))

    def memory(self) -> dict[str, dict[str, int]]:
        return {module: memory(proc.pid) for module, proc in self.procs.items()}

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            self._stack.close()
