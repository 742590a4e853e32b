"""What the benchmarks share: the whole system as real processes, started the one way the
tests start it (calls_testing.system) in a database and a RabbitMQ vhost of its own, with the
services' default tunables; percentiles, memory readings, the machine description and the
results file.

    with bench_system("load", "simulator", "call-log", "gateway", "dialer",
                      env={"DIALER_CPS": "1"}) as system:
        ...  # system.gateway, system.auth(org), system.service("gateway").process.pid
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from calls_events import CallRequested, Envelope, call_stream
from calls_testing.system import (
    JWT_SECRET,
    SIM_ACCOUNT_SID,
    SIM_AUTH_TOKEN,
    System,
    SystemOptions,
    prepare_system,
    start_system,
    stop_system,
)
from gateway.auth import issue_token
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["JWT_SECRET", "SIM_ACCOUNT_SID", "SIM_AUTH_TOKEN", "System"]

PG_BASE = "postgresql://postgres@127.0.0.1:5432/"


def bench_token(org: str, sub: str = "bench") -> str:
    """A bearer token the benchmark system's gateway accepts (two hours)."""
    return issue_token(JWT_SECRET, organization_id=org, subject=sub, ttl_seconds=7200)


def requested_call(
    org: str, to_number: str = "+14155550100", from_number: str = "+14155550101"
) -> Envelope:
    """A CallRequested in a new call's stream, as POST /calls appends it."""
    call_id = uuid.uuid4()
    requested = CallRequested(
        call_id=call_id, to_number=to_number, from_number=from_number, requested_by="bench"
    )
    return Envelope.wrap(requested, stream_id=call_stream(call_id), organization_id=org)


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


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


def running(system: System) -> System:
    """Start every service of a prepared system and wait until each is ready."""
    start_system(system)
    try:
        asyncio.run(system.ready())
    except BaseException:
        stop_system(system)
        raise
    return system


def pids(system: System) -> dict[str, int]:
    """Each running service's process id, by the service's name."""
    return {
        name: service.process.pid
        for name, service in system.services.items()
        if service.process is not None
    }


def memory_of(system: System) -> dict[str, dict[str, int]]:
    return {name: memory(pid) for name, pid in pids(system).items()}


@contextlib.contextmanager
def bench_system(
    name: str,
    *services: str,
    env: Mapping[str, str] | None = None,
    relay_process: bool = False,
    database_url: str | None = None,
    port_base: int | None = None,
    started: bool = True,
) -> Iterator[System]:
    """The named services (calls_testing.system's names: "simulator", "call-log", "gateway",
    "dialer", "recordings", "relay" with `relay_process`) as real processes, migrated first,
    the services' default tunables with `env` on top, started and ready unless `started` is
    False (then `running(system)` when the benchmark is ready). A database of their own
    (`calls_bench_<name>`, created and dropped after) unless given `database_url` (the
    caller's: kept), a RabbitMQ vhost of their own; ports from `port_base`, else free ones.
    Logs go to $BENCH_LOG_DIR if that is set (to see why a service did not become ready),
    else to a temporary directory removed after."""
    with contextlib.ExitStack() as stack:
        if database_url is None:
            database_url = PG_BASE + f"calls_bench_{name}"
            prepare_database(database_url, keep=False)
            stack.callback(drop_database, database_url)
        root = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        stack.callback(shutil.rmtree, root, True)
        (root / "recordings").mkdir()
        amqp_url = stack.enter_context(private_vhost(f"calls_bench_{name}"))
        log_level = os.environ.get("BENCH_LOG_LEVEL", "WARNING")
        options = SystemOptions(
            extra_env={"LOG_LEVEL": log_level, "MIGRATE_ON_START": "false", **(env or {})},
            services=services,
            relay_process=relay_process,
            quick=False,
            log_dir=Path(os.environ.get("BENCH_LOG_DIR") or root / "logs"),
            quiet_migrate=True,
            issue_token=bench_token,
            port_base=port_base,
        )
        system = prepare_system(database_url, amqp_url, str(root / "recordings"), options)
        stack.callback(stop_system, system)
        if started:
            running(system)
        yield system


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """A bench's command line, with its module docstring, as written, for the help."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
