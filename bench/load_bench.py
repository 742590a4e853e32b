"""Load figures: `POST /calls` at 32 concurrent connections beside its floor (a bare aiohttp
handler doing one equivalent INSERT into the same PostgreSQL, measured in the same run),
`GET /calls/{id}` and `GET /calls` on the data that load left behind, and memory (VmRSS,
VmHWM) of every service at rest and under load. With --profile, one more `POST /calls` run
under py-spy, summarized (the hottest functions of the gateway).

    make bench-load                                    # 30 s per figure
    uv run --with py-spy python bench/load_bench.py --duration 60 --profile

The whole system runs as real processes (gateway, call log, dialer, recordings, carrier
simulator) in a database and RabbitMQ vhost of its own. The dialer runs at DIALER_CPS=1, so
the calls posted just fill its queue: this measures accepting calls, not dialing them. Load
comes from bench/loadgen.py, a separate process on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from calls_platform import eventstore
from calls_platform.db import open_pool
from calls_testing.system import Service, free_port, wait_ready
from harness import (
    SIM_ACCOUNT_SID,
    SIM_AUTH_TOKEN,
    System,
    bench_parser,
    bench_system,
    machine,
    memory,
    percentile,
    requested_call,
    write_results,
)
from harness import (
    pids as pids_of,
)

HERE = Path(__file__).resolve().parent
ORG = "org_load"
POST_BODY = '{"to_number": "+1{n}", "from_number": "+14155550100"}'
# the outbox relay runs as a process of its own, as deployed (RELAY_IN_PROCESS=false)
SERVICES = ("simulator", "call-log", "gateway", "dialer", "recordings", "relay")


def _ticks(stat: str) -> int:
    """utime + stime, in clock ticks, from a /proc/<pid>/stat line."""
    fields = stat.rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks."""
    return _ticks(Path(f"/proc/{pid}/stat").read_text())


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def ticks_of_command(name: str) -> int:
    """CPU clock ticks of every process whose command is `name` (PostgreSQL's backends, the
    RabbitMQ node), by their /proc entries now: what the services' work costs the servers."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        if text[text.index("(") + 1 : text.rindex(")")] == name:
            total += _ticks(text)
    return total


# the servers every phase uses, by command name; a backend that starts and ends within a phase
# is missed (the services hold pooled connections, so few do)
SERVERS = {"postgresql (every backend)": "postgres", "rabbitmq": "beam.smp"}


class Watch:
    """Samples memory of the watched processes every second while a phase runs, and measures
    the CPU each (and the whole machine: others' work included) spent during it, with the
    servers' (SERVERS: every process of theirs on the machine, other databases' backends
    included, so read them on a quiet machine) and the load generator's (the phase's child
    process, from RUSAGE_CHILDREN once it has been waited for; over the whole phase, its
    warm-up included, where loadgen's own `loadgen_cpu_s` covers the measured seconds)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak_rss: dict[str, int] = dict.fromkeys(pids, 0)
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            for name, pid in self.pids.items():
                self.peak_rss[name] = max(self.peak_rss[name], memory(pid)["VmRSS"])
            await asyncio.sleep(1)

    def __enter__(self) -> Watch:
        self._cpu0 = {name: cpu_ticks(pid) for name, pid in self.pids.items()}
        self._servers0 = {name: ticks_of_command(cmd) for name, cmd in SERVERS.items()}
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._children0 = children.ru_utime + children.ru_stime
        self._machine0 = machine_ticks()
        self._t0 = time.perf_counter()
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        hz = os.sysconf("SC_CLK_TCK")
        seconds = time.perf_counter() - self._t0
        busy = machine_ticks()[0] - self._machine0[0]
        self.cpu_seconds = {
            name: (cpu_ticks(pid) - self._cpu0[name]) / hz for name, pid in self.pids.items()
        }
        for name, cmd in SERVERS.items():
            self.cpu_seconds[name] = (ticks_of_command(cmd) - self._servers0[name]) / hz
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu_seconds["load generator"] = children.ru_utime + children.ru_stime - self._children0
        self.cpu_seconds["machine (of 100 x cpus)"] = busy / hz
        self.cpu_percent = {
            name: round(100 * used / seconds, 1) for name, used in self.cpu_seconds.items()
        }
        self.memory = {
            name: {"VmRSS_peak_kib": self.peak_rss[name], "VmHWM_kib": memory(pid)["VmHWM"]}
            for name, pid in self.pids.items()
        }


async def loadgen(args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "loadgen.py"),
        "--connections",
        str(args.connections),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        *extra,
        stdout=subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out
    result: dict[str, Any] = json.loads(out)
    return result


async def phase(
    label: str, args: argparse.Namespace, pids: dict[str, int], *extra: str
) -> dict[str, Any]:
    with Watch(pids) as watch:
        figures = await loadgen(args, *extra)
    figures["cpu_percent"] = watch.cpu_percent
    figures["memory_kib"] = watch.memory
    print(
        f"{label}: {figures['requests_per_s']} req/s, p50 {figures['p50_ms']} ms,"
        f" p99 {figures['p99_ms']} ms, statuses {figures['statuses']}, errors {figures['errors']}",
        flush=True,
    )
    print(f"  cpu %: {watch.cpu_percent}", flush=True)
    return figures


async def analyze(url: str) -> None:
    """ANALYZE the system's database between phases, as autovacuum keeps a running system's
    statistics. Without it every phase ran on tables PostgreSQL had never analyzed (a bench
    database is new, autovacuum visits it a minute or more later), and a statement prepared
    while a table was empty kept a sequential-scan plan as the table grew: the call log's
    projector spent 1.1 ms a step reading ~9 calls by id, 43 % of PostgreSQL's time in the
    callbacks phase (0.06 ms once analyzed; pg_stat_statements, 2026-12-04)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("ANALYZE")


async def caught_up(url: str, limit_s: float = 600) -> float:
    """Wait until relay, call log and dialer have taken every event; return the seconds."""
    t0 = time.perf_counter()
    while True:  # the shared server may be out of connections for a moment
        try:
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
            break
        except psycopg.OperationalError:
            await asyncio.sleep(0.2)
    async with conn:
        while time.perf_counter() - t0 < limit_s:
            cur = await conn.execute(
                # readers are at the head when their (transaction_id, position) checkpoint is
                # the last event in that order
                "SELECT (SELECT (transaction_id, position)::text FROM eventstore.events"
                "  ORDER BY transaction_id DESC, position DESC LIMIT 1),"
                " (SELECT (transaction_id, position)::text FROM eventstore.checkpoints"
                "  WHERE name = 'amqp-relay'),"
                " (SELECT (transaction_id, position)::text FROM call_log.checkpoints"
                "  WHERE name = 'calls')"
            )
            head, relayed, projected = await cur.fetchone() or (0,) * 3
            # the counts (whole-table scans, ~10 ms each at 100,000 events) only once the
            # readers are there: asked every 50 ms they took CPU from what is being waited for
            if head == relayed == projected:
                # every call requested, one by one or carried by a batch's request (whose
                # calls' own CallRequested come as they are dialed), has its dial
                cur = await conn.execute(
                    "SELECT (SELECT count(*) FROM ("
                    "  SELECT data->>'call_id' FROM eventstore.events"
                    "   WHERE event_type = 'CallRequested'"
                    "  UNION SELECT c->>'call_id' FROM eventstore.events,"
                    "   jsonb_array_elements(coalesce(data->'calls', '[]')) c"
                    "   WHERE event_type = 'BatchRequested') r),"
                    " (SELECT count(*) FROM dialer.dials)"
                )
                requested, dials = await cur.fetchone() or (0, 0)
                if requested == dials:
                    return round(time.perf_counter() - t0, 2)
            await asyncio.sleep(0.05)
    raise TimeoutError("the system did not catch up")


async def projection_lag(url: str, rate: int, seconds: float, writers: int = 4) -> dict[str, Any]:
    """`writers` concurrent writers append single-event transactions at `rate`/s in all; the
    lag of each event is commit → the projector's checkpoint at or past it (in the store's
    (transaction_id, position) order)."""
    pool = await open_pool(url, name="bench-lag", max_size=writers)
    await pool.wait(timeout=300)  # the shared server may be out of connections for a while
    committed: dict[int, float] = {}
    lags: list[float] = []
    stop = asyncio.Event()

    async def writer() -> None:
        interval = writers / rate
        next_at = time.perf_counter()
        while not stop.is_set():
            envelope = requested_call("org_lag")
            async with pool.connection() as conn:
                [recorded] = await eventstore.append(conn, [envelope])
            committed[recorded.position or 0] = time.perf_counter()
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    async def watcher() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            while not stop.is_set() or committed:
                pending = list(committed)
                cur = await conn.execute(
                    "SELECT e.position FROM eventstore.events e, call_log.checkpoints c"
                    " WHERE c.name = 'calls' AND e.position = ANY(%s)"
                    " AND (e.transaction_id, e.position) <= (c.transaction_id, c.position)",
                    (pending,),
                )
                now = time.perf_counter()
                for (position,) in await cur.fetchall():
                    lags.append((now - committed.pop(position)) * 1000)
                await asyncio.sleep(0.002)

    async def timer() -> None:
        await asyncio.sleep(seconds)
        stop.set()

    started = time.perf_counter()
    await asyncio.gather(timer(), watcher(), *(writer() for _ in range(writers)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return {
        "target_rate_per_s": rate,
        "achieved_rate_per_s": round(len(lags) / elapsed, 1),
        "events": len(lags),
        "p50_ms": round(percentile(lags, 50), 1),
        "p99_ms": round(percentile(lags, 99), 1),
        "max_ms": round(max(lags), 1),
    }


async def batches(gateway: str, auth: tuple[str, str], runs: int) -> dict[str, Any]:
    """Accept 10,000 numbers `runs` times; after each, the first GET /calls/batch/{id}."""
    headers = dict([auth[1].split(": ", 1)])
    accept: list[float] = []
    first_get: list[float] = []
    statuses: list[int] = []
    async with aiohttp.ClientSession(headers=headers) as http:
        for run in range(runs):
            body = {
                "to_numbers": [f"+1{700 + run:03d}555{i:04d}" for i in range(10_000)],
                "from_number": "+14155550100",
            }
            t0 = time.perf_counter()
            async with http.post(f"{gateway}/calls/batch", json=body) as resp:
                accepted = await resp.json()
                assert resp.status == 202, accepted
            t1 = time.perf_counter()
            async with http.get(f"{gateway}/calls/batch/{accepted['batch_id']}") as resp:
                await resp.read()
                statuses.append(resp.status)  # 404: not projected within the call log's wait
            t2 = time.perf_counter()
            accept.append((t1 - t0) * 1000)
            first_get.append((t2 - t1) * 1000)
    return {
        "runs": runs,
        "accept_10000_ms": {
            "p50": round(percentile(accept, 50)),
            "all": [round(a) for a in accept],
        },
        "first_get_after_ms": {
            "p50": round(percentile(first_get, 50)),
            "all": [round(g) for g in first_get],
            "statuses": statuses,
        },
    }


async def profile(
    args: argparse.Namespace, pid: int, post: tuple[str, ...], out: Path
) -> dict[str, Any]:
    """`POST /calls` under load once more, with py-spy sampling the gateway."""
    spy = shutil.which("py-spy")
    if spy is None:
        return {"skipped": "py-spy not found (run with: uv run --with py-spy ...)"}
    raw = out.with_suffix(".txt")
    raw.parent.mkdir(parents=True, exist_ok=True)
    recorder = await asyncio.create_subprocess_exec(
        spy,
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--rate",
        "200",
        "--duration",
        str(int(args.duration)),
        "--output",
        str(raw),
        "--nonblocking",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    figures = await loadgen(args, *post)
    await recorder.wait()
    summary = summarize(raw)
    summary["requests_per_s_under_py_spy"] = figures["requests_per_s"]
    summary["collapsed_stacks"] = str(raw)
    return summary


def summarize(raw: Path, top: int = 25) -> dict[str, Any]:
    """Inclusive and self share of samples per function, from py-spy's collapsed stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0] + ")"
            for f in stack.split(";")
        ]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    share = {"total_samples": total}
    share["inclusive_percent"] = {  # type: ignore[assignment]
        f: round(100 * n / total, 1) for f, n in inclusive.most_common(top)
    }
    share["self_percent"] = {  # type: ignore[assignment]
        f: round(100 * n / total, 1) for f, n in own.most_common(top)
    }
    return share


async def measure(
    system: System, args: argparse.Namespace, floor_proc: subprocess.Popen[bytes], floor: str
) -> dict[str, Any]:
    gateway = system.gateway
    auth = ("--header", f"Authorization: Bearer {system.token(ORG, 'bench')}")
    post = ("--url", f"{gateway}/calls", "--method", "POST", "--body", POST_BODY, *auth)
    results: dict[str, Any] = {}
    await wait_ready(floor)
    pids = pids_of(system)
    await asyncio.sleep(5)
    results["memory_at_rest_kib"] = {name: memory(pid) for name, pid in pids.items()}
    print(f"memory at rest: {results['memory_at_rest_kib']}", flush=True)
    # a few seconds of calls first, caught up and analyzed, so the first measured phase does not
    # run on empty tables with the plans made for them (see analyze())
    warm = argparse.Namespace(**{**vars(args), "duration": 5.0, "warmup": 1.0})
    seeded = await loadgen(warm, *post)
    await caught_up(system.database_url)
    await analyze(system.database_url)
    results["warm-up calls before the first phase"] = seeded["statuses"]
    print(f"warm-up: {seeded['statuses']}", flush=True)
    floor_post = ("--url", f"{floor}/calls", "--method", "POST", "--body", POST_BODY)
    watched = pids | {"floor_server": floor_proc.pid}
    results["floor POST /calls (bare handler, one INSERT)"] = await phase(
        "floor", args, watched, *floor_post
    )
    results["POST /calls"] = await phase("POST /calls", args, pids, *post)
    results["catch-up after POST load (s)"] = await caught_up(system.database_url)
    await analyze(system.database_url)
    print(f"caught up in {results['catch-up after POST load (s)']} s", flush=True)
    # the same with the gateway's per-organization rate limiter on, at a limit never reached:
    # what taking a token costs (a second gateway replica, configured so)
    gateway_service = system.service("gateway")
    port = free_port()
    limited_env = gateway_service.env | {
        "GATEWAY_PORT": str(port),
        "RATE_LIMIT_ORG_PER_SECOND": "1000000",
        "RATE_LIMIT_ORG_BURST": "1000000",
    }
    limiting = Service("gateway-limited", "gateway", port, limited_env, gateway_service.log_dir)
    limiting.start()
    try:
        limited = limiting.url
        await wait_ready(limited)
        assert limiting.process is not None
        results["POST /calls, rate limiter on (at 1,000,000/s: its cost)"] = await phase(
            "POST /calls, rate limiter on",
            args,
            pids | {"gateway (limiter on)": limiting.process.pid},
            "--url",
            f"{limited}/calls",
            "--method",
            "POST",
            "--body",
            POST_BODY,
            *auth,
        )
    finally:
        await asyncio.to_thread(limiting.close)
    await caught_up(system.database_url)
    await analyze(system.database_url)
    # signed carrier status callbacks on calls the POST phase created, each a new report
    async with await psycopg.AsyncConnection.connect(system.database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT call_id FROM call_log.calls LIMIT 5000")
        callback_ids = [row[0] for row in await cur.fetchall()]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as urls:
        urls.write(
            "\n".join(
                f"{gateway}/webhooks/twilio/status?call_id={i}&org={ORG}" for i in callback_ids
            )
        )
    try:
        results["POST /webhooks/twilio/status (signed)"] = await phase(
            "callbacks",
            args,
            pids,
            "--urls-file",
            urls.name,
            "--method",
            "POST",
            "--body",
            f"AccountSid={SIM_ACCOUNT_SID}&CallSid=CA{{n}}&CallStatus=ringing&SequenceNumber={{n}}",
            "--twilio-auth-token",
            SIM_AUTH_TOKEN,
        )
    finally:
        os.unlink(urls.name)
    results["catch-up after callbacks load (s)"] = await caught_up(system.database_url)
    await analyze(system.database_url)
    print(f"caught up in {results['catch-up after callbacks load (s)']} s", flush=True)
    results["projection lag at 1,000 events/s"] = await projection_lag(
        system.database_url, 1000, args.duration, writers=args.lag_writers
    )
    print(f"projection lag: {results['projection lag at 1,000 events/s']}", flush=True)
    results["catch-up after appends (s)"] = await caught_up(system.database_url)
    await analyze(system.database_url)
    # what the five batches cost every process, accepted to settled
    with Watch(pids) as watch:
        results["batches of 10,000"] = await batches(gateway, auth, 5)
        settled = await caught_up(system.database_url)
    results["batches of 10,000"]["settled after the last (s)"] = settled
    results["batches of 10,000"]["cpu_s_per_batch"] = {
        name: round(used / 5, 2) for name, used in watch.cpu_seconds.items()
    }
    print(f"batches: {results['batches of 10,000']}", flush=True)
    await analyze(system.database_url)
    results["floor POST /calls, again after"] = await phase(
        "floor again", args, watched, *floor_post
    )
    floors = [
        results["floor POST /calls (bare handler, one INSERT)"]["requests_per_s"],
        results["floor POST /calls, again after"]["requests_per_s"],
    ]
    floor = sum(floors) / len(floors)
    results["POST /calls as share of floor"] = round(
        results["POST /calls"]["requests_per_s"] / floor, 3
    )
    results["POST /calls, rate limiter on, as share of floor"] = round(
        results["POST /calls, rate limiter on (at 1,000,000/s: its cost)"]["requests_per_s"]
        / floor,
        3,
    )
    results["callbacks as share of floor"] = round(
        results["POST /webhooks/twilio/status (signed)"]["requests_per_s"] / floor, 3
    )
    async with await psycopg.AsyncConnection.connect(system.database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT call_id FROM call_log.calls ORDER BY random() LIMIT 5000")
        ids = [row[0] for row in await cur.fetchall()]
        cur = await conn.execute("SELECT count(*) FROM call_log.calls")
        row = await cur.fetchone()
        results["dataset_calls"] = row[0] if row else 0
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as urls:
        urls.write("\n".join(f"{gateway}/calls/{i}" for i in ids))
    try:
        results["GET /calls/{id}"] = await phase(
            "GET /calls/{id}", args, pids, "--urls-file", urls.name, *auth
        )
    finally:
        os.unlink(urls.name)
    results["GET /calls"] = await phase(
        "GET /calls", args, pids, "--url", f"{gateway}/calls", *auth
    )
    if args.profile:
        await caught_up(system.database_url)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        out = Path(args.out) / f"profile-post-calls-gateway-{stamp}"
        results["profile POST /calls (gateway, py-spy)"] = await profile(
            args, pids["gateway"], post, out
        )
    return results


def parse_args() -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds each")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--profile", action="store_true", help="also profile the gateway")
    parser.add_argument("--port-base", type=int, default=19200)
    parser.add_argument(
        "--lag-writers",
        type=int,
        default=16,
        help="concurrent writers of the projection-lag phase (4 reached ~570 events/s here)",
    )
    parser.add_argument("--out", default="bench/results")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    results: dict[str, Any] = {
        "machine": machine(),
        "connections": args.connections,
        "duration_s": args.duration,
        "dialer_cps": 1,
    }
    # the gateway's write rate limit (20/s per organization by default) is off: this measures
    # what the system holds, not the limit; the limiter's own cost is a phase of its own
    env = {
        "DIALER_CPS": "1",
        "RATE_LIMIT_ORG_PER_SECOND": "0",
        "RATE_LIMIT_KEY_PER_SECOND": "0",
    }
    with bench_system(
        "load", *SERVICES, env=env, relay_process=True, port_base=args.port_base
    ) as system:
        floor_port = free_port()
        floor_proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "floor_server.py"),
                "--database-url",
                system.database_url,
                "--port",
                str(floor_port),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            floor = f"http://127.0.0.1:{floor_port}"
            results |= asyncio.run(measure(system, args, floor_proc, floor))
        finally:
            floor_proc.terminate()
            floor_proc.wait(30)
    results["load_average_at_end"] = os.getloadavg()
    for key in (
        "POST /calls as share of floor",
        "POST /calls, rate limiter on, as share of floor",
        "callbacks as share of floor",
    ):
        print(f"{key}: {results[key]}")
    print(f"written to {write_results('load', results, args.out)}")


if __name__ == "__main__":
    main()
