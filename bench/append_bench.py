"""The write path alone: C concurrent writers appending one-event transactions (a new call
stream each, as POST /calls does) through `calls_platform.eventstore.append`, for D seconds,
against a database of its own; prints one JSON object (appends/s, latency, and what the
server's backends were waiting on, sampled from pg_stat_activity).

    uv run python bench/append_bench.py --connections 32 --duration 15

To compare with another version of the event store (e.g. the append lock before issue #15),
put that version's libs first on the path:

    PYTHONPATH=/tmp/old/libs/platform/src:/tmp/old/libs/events/src \
        uv run python bench/append_bench.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections import Counter
from typing import Any

import psycopg
from calls_platform import eventstore
from calls_platform.db import open_pool
from calls_platform.migrate import migrate_event_store
from harness import PG_BASE, drop_database, percentile, prepare_database, requested_call


async def run(url: str, connections: int, seconds: float) -> dict[str, Any]:
    pool = await open_pool(url, name="append-bench", max_size=connections)
    await pool.wait(timeout=300)
    async with pool.connection() as conn:
        await migrate_event_store(conn)
    latencies: list[float] = []
    waits: Counter[str] = Counter()
    stop = time.perf_counter() + seconds

    async def writer() -> None:
        while time.perf_counter() < stop:
            envelope = requested_call("org_bench", "+14155550123", "+14155550100")
            t0 = time.perf_counter()
            async with pool.connection() as conn:
                await eventstore.append(
                    conn, [envelope], expected_versions={envelope.stream_id: eventstore.NO_STREAM}
                )
            latencies.append((time.perf_counter() - t0) * 1000)

    async def sampler() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            while time.perf_counter() < stop:
                cur = await conn.execute(
                    "SELECT state, coalesce(wait_event_type, 'CPU') || ':'"
                    " || coalesce(wait_event, '-') FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND state <> 'idle'"
                )
                for state, wait in await cur.fetchall():
                    waits[f"{state} / {wait}"] += 1
                await asyncio.sleep(0.05)

    started = time.perf_counter()
    await asyncio.gather(sampler(), *(writer() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    await pool.close()
    total = sum(waits.values()) or 1
    return {
        "connections": connections,
        "appends_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "backends_waiting_on (share of samples)": {
            k: round(n / total, 3) for k, n in waits.most_common(6)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--database", default=f"calls_bench_append_{uuid.uuid4().hex[:6]}")
    args = parser.parse_args()
    url = PG_BASE + args.database
    prepare_database(url, keep=False)
    try:
        result = asyncio.run(run(url, args.connections, args.duration))
    finally:
        drop_database(url)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
