"""Call-history benchmark: load one organization with N calls, rebuild the read model, and
measure GET /calls through the real gateway and call log, plus projection lag.

    make bench-history                     # 1,000,000 calls (about 10 minutes here)
    uv run python bench/history_bench.py --calls 100000 --keep

The event store is bulk-loaded with COPY (events built as the services would write them),
then the call log is rebuilt from position 0 — the same code path as `call_log rebuild`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import psycopg
from call_log.projector import rebuild
from calls_platform import eventstore
from calls_platform.db import open_pool
from calls_testing.system import start_system
from harness import (
    System,
    bench_parser,
    bench_system,
    percentile,
    prepare_database,
    requested_call,
    write_results,
)

ORG = "org_bench"
COLUMNS = (
    "position, event_id, stream_id, stream_version, event_type, event_version,"
    " organization_id, occurred_at, correlation_id, causation_id, data"
)


def number(rng: random.Random) -> str:
    return f"+1{rng.randint(200, 999)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"


def call_events(i: int, rng: random.Random, start: datetime) -> list[tuple[str, dict[str, Any]]]:
    """The events one call leaves behind, with a realistic mix of outcomes."""
    call_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    at = start + timedelta(seconds=i * 31 + rng.randint(0, 30))
    to_number, from_number = number(rng), number(rng)
    sid = "CA" + uuid.UUID(int=rng.getrandbits(128)).hex
    roll = rng.random()
    events: list[tuple[str, dict[str, Any]]] = []
    if roll < 0.05:
        events.append(
            (
                "InboundCallReceived",
                {
                    "call_id": str(call_id),
                    "call_sid": sid,
                    "from_number": from_number,
                    "to_number": to_number,
                    "agent_id": str(uuid.UUID(int=1)),
                    "agent_name": "Inbound agent",
                    "received_at": at.isoformat(),
                },
            )
        )
    else:
        events.append(
            (
                "CallRequested",
                {
                    "call_id": str(call_id),
                    "to_number": to_number,
                    "from_number": from_number,
                    "agent_id": None,
                    "agent_name": "Bench agent",
                    "batch_id": None,
                    "batch_index": None,
                    "record": True,
                    "requested_by": "bench",
                },
            )
        )
        if roll > 0.98:
            return [(t, d | {"_at": at}) for t, d in events]  # still queued
        if 0.94 < roll <= 0.98:
            events.append(
                (
                    "CallFailed",
                    {
                        "call_id": str(call_id),
                        "error_code": 21211,
                        "http_status": 400,
                        "error_message": f"The 'To' number {to_number} is not valid.",
                    },
                )
            )
            return [(t, d | {"_at": at}) for t, d in events]
    carrier_status, answered_by = "completed", None
    if 0.80 < roll <= 0.87:
        answered_by = "machine_start"
    elif 0.87 < roll <= 0.91:
        carrier_status = "busy"
    elif 0.91 < roll <= 0.94:
        carrier_status = "no-answer"
    events.append(
        (
            "CallStatusReported",
            {
                "call_id": str(call_id),
                "call_sid": sid,
                "carrier_status": carrier_status,
                "sequence_number": 3,
                "answered_by": answered_by,
                "sip_response_code": 200,
                "duration_seconds": rng.randint(5, 600) if carrier_status == "completed" else 0,
                "reported_at": (at + timedelta(seconds=90)).isoformat(),
                "source": "callback",
            },
        )
    )
    if 0.75 < roll <= 0.80:
        events.append(
            (
                "ConversationReported",
                {
                    "call_id": str(call_id),
                    "ended_by": "caller",
                    "transcript": [
                        {"role": "agent", "content": "Hello!"},
                        {"role": "caller", "content": "Bye."},
                    ],
                    "provider_usage": {"openai": {"type": "llm", "model": "gpt-4o"}},
                },
            )
        )
    return [(t, d | {"_at": at}) for t, d in events]


async def load(url: str, calls: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(seconds=calls * 31)
    position = 0
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.cursor() as cur:
        async with cur.copy(f"COPY eventstore.events ({COLUMNS}) FROM STDIN") as copy:
            for i in range(calls):
                events = call_events(i, rng, start)
                stream = f"call-{events[0][1]['call_id']}"
                for version, (event_type, data) in enumerate(events, start=1):
                    position += 1
                    at = data.pop("_at")
                    await copy.write_row(
                        (
                            position,
                            uuid.uuid4(),
                            stream,
                            version,
                            event_type,
                            1,
                            ORG,
                            at,
                            None,
                            None,
                            json.dumps(data),
                        )
                    )
        # positions were given explicitly: the sequence continues after them
        await cur.execute("SELECT setval('eventstore.events_position_seq', %s)", (position,))
        # the loaded history counts as already published: the relay starts at its end (the
        # load's transaction and last position), as it would in a system that has been
        # running (no backlog competing for CPU)
        await cur.execute(
            "INSERT INTO eventstore.checkpoints (name, transaction_id, position)"
            " VALUES ('amqp-relay', pg_current_xact_id(), %s)"
            " ON CONFLICT (name) DO UPDATE"
            " SET transaction_id = excluded.transaction_id, position = excluded.position",
            (position,),
        )
        await conn.commit()
    return position


async def measure(http: aiohttp.ClientSession, url: str, token: str, n: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    samples = []
    total = None
    for i in range(n + 10):
        t0 = time.perf_counter()
        async with http.get(url, headers=headers) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        if i >= 10:  # warm-up
            samples.append((time.perf_counter() - t0) * 1000)
        total = body["total"]
    return {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99), "total": total}


async def projection_lag(url: str, rate: int, seconds: int) -> dict[str, float]:
    """Append single-event transactions at `rate`/s; time commit → projected."""
    pool = await open_pool(url, name="bench-lag", max_size=4)
    await pool.wait()
    committed: dict[int, float] = {}
    lags: list[float] = []
    stop = asyncio.Event()

    async def writer() -> None:
        interval = 1 / rate
        next_at = time.perf_counter()
        for _ in range(rate * seconds):
            envelope = requested_call("org_lag")
            async with pool.connection() as conn:
                recorded = await eventstore.append(conn, [envelope])
            committed[recorded[0].position or 0] = time.perf_counter()
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        stop.set()

    async def watcher() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            seen = 0
            while not stop.is_set() or len(lags) < len(committed):
                cur = await conn.execute(
                    "SELECT position FROM call_log.checkpoints WHERE name = 'calls'"
                )
                row = await cur.fetchone()
                now = time.perf_counter()
                projected = int(row[0]) if row else 0
                for pos in range(seen + 1, projected + 1):
                    if pos in committed:
                        lags.append((now - committed.pop(pos)) * 1000)
                seen = max(seen, projected)
                await asyncio.sleep(0.001)

    await asyncio.gather(writer(), watcher())
    await pool.close()
    return {
        "rate_per_s": rate,
        "events": len(lags),
        "p50_ms": percentile(lags, 50),
        "p99_ms": percentile(lags, 99),
        "max_ms": max(lags),
    }


def parse_args() -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="reuse an already loaded database")
    parser.add_argument("--lag-seconds", type=int, default=20)
    parser.add_argument("--out", default="bench/results")
    return parser.parse_args()


async def run(args: argparse.Namespace, system: System, loaded: bool) -> dict[str, Any]:
    url = system.database_url
    results: dict[str, Any] = {}
    if not loaded:
        t0 = time.perf_counter()
        events = await load(url, args.calls)
        results["load"] = {"events": events, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"loaded {events} events in {results['load']['seconds']} s", flush=True)
        pool = await open_pool(url, name="bench-rebuild", max_size=2)
        await pool.wait()
        t0 = time.perf_counter()
        applied = await rebuild(pool)
        elapsed = time.perf_counter() - t0
        await pool.close()
        results["rebuild"] = {
            "events": applied,
            "seconds": round(elapsed, 1),
            "events_per_s": round(applied / elapsed),
        }
        print(f"rebuilt read model: {results['rebuild']}", flush=True)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("VACUUM ANALYZE call_log.calls")
    start_system(system)  # stopped by bench_system
    await system.ready()
    token = system.token(ORG, "bench")
    base = f"{system.gateway}/calls"
    results["list"] = {}
    async with aiohttp.ClientSession() as http:
        for label, query in QUERIES.items():
            results["list"][label] = await measure(http, base + query, token, args.samples)
            print(f"GET /calls{query}: {results['list'][label]}", flush=True)
    results["projection_lag"] = await projection_lag(url, 500, args.lag_seconds)
    print(f"projection lag at 500 events/s: {results['projection_lag']}", flush=True)
    return results


QUERIES = {
    "first page": "",
    "page 5,000": "?page=5000",
    "status=completed": "?status=completed",
    "status=failed": "?status=failed",
    "status=voicemail (outcome)": "?status=voicemail",
    "status=invalid_number (outcome)": "?status=invalid_number",
    "direction=inbound": "?direction=inbound",
    "search 4 digits": "?search=4242",
    "search 4 digits, page 2": "?search=4242&page=2",
}


def main() -> None:
    args = parse_args()
    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/calls_bench")
    loaded = prepare_database(url, args.keep)
    # migrated (the data is loaded into the schemas), started once loaded
    with bench_system("history", "call-log", "gateway", database_url=url, started=False) as system:
        results: dict[str, Any] = {
            "calls": args.calls,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            **asyncio.run(run(args, system, loaded)),
        }
    print(f"written to {write_results('history', results, args.out)}")


if __name__ == "__main__":
    main()
