"""Batch benchmark: accept time for 1,000 and 10,000 numbers, batch status time at 10,000,
and how long a single call waits to be dialed while a 10,000-number batch drains.

    make bench-batch

Runs the whole system (gateway, call log, dialer, carrier simulator) as real processes on
this machine against a fresh database, at the default DIALER_CPS=1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
from typing import Any

import aiohttp
from harness import System, bench_parser, bench_system, percentile, write_results


def numbers(n: int, prefix: int) -> list[str]:
    return [f"+1{prefix:03d}555{i:04d}" for i in range(n)]


async def timed(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    async with http.request(method, url, **kw) as resp:
        body = await resp.json()
        assert resp.status < 300, body
    return (time.perf_counter() - t0) * 1000, body


async def single_call_waits(http: aiohttp.ClientSession, system: System, runs: int) -> list[float]:
    """Seconds from POST /calls to the carrier's create request, for `runs` single calls."""
    waits = []
    for i in range(runs):
        await asyncio.sleep(2)
        single = f"+1303555{i:04d}"
        placed = time.time()
        await timed(
            http,
            "POST",
            f"{system.gateway}/calls",
            json={"to_number": single, "from_number": "+14155550100"},
        )
        while True:
            dialed = [c["created_at"] for c in await system.sim(http).calls(single)]
            if dialed:
                waits.append(dialed[0] - placed)
                break
            await asyncio.sleep(0.05)
    return waits


async def run(
    system: System, drain_size: int, sizes: list[int], singles: int, attempts: int
) -> dict[str, Any]:
    gateway = system.gateway
    results: dict[str, Any] = {}
    drained = f"{drain_size:,}"
    async with aiohttp.ClientSession(headers=system.auth("org_batch")) as http:
        # 1. a 10,000-number batch draining at 1 call per second; single calls beside it
        body = {"to_numbers": numbers(drain_size, 250), "from_number": "+14155550100"}
        _, drain = await timed(http, "POST", f"{gateway}/calls/batch", json=body)
        first_read, _ = await timed(http, "GET", f"{gateway}/calls/batch/{drain['batch_id']}")
        results[f"first status read after accepting {drained} (ms)"] = first_read
        waits = await single_call_waits(http, system, singles)
        waited = f"single call dialed while {drained} drain (s)"
        results[waited] = {"p50": percentile(waits, 50), "max": max(waits), "runs": len(waits)}
        print(f"single call wait: {results[waited]}")
        status = [
            (await timed(http, "GET", f"{gateway}/calls/batch/{drain['batch_id']}"))[0]
            for _ in range(30)
        ]
        results[f"status at {drained}"] = {
            "p50_ms": percentile(status, 50),
            "p99_ms": percentile(status, 99),
        }
        print(f"status: {results[f'status at {drained}']}", flush=True)
        await timed(http, "POST", f"{gateway}/calls/batch/{drain['batch_id']}/cancel")

        # 2. accept time (each batch canceled right away)
        for size, prefix in zip(sizes, range(201, 210), strict=False):
            samples = []
            for attempt in range(attempts):
                await asyncio.sleep(2)
                body = {
                    "to_numbers": numbers(size, prefix + 10 * attempt),
                    "from_number": "+14155550100",
                }
                ms, batch = await timed(http, "POST", f"{gateway}/calls/batch", json=body)
                samples.append(ms)
                await timed(http, "POST", f"{gateway}/calls/batch/{batch['batch_id']}/cancel")
            label = f"accept {size:,}"
            results[label] = {"p50_ms": percentile(samples, 50), "max_ms": max(samples)}
            print(f"{label}: {results[label]}", flush=True)
    return results


def parse_args() -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--drain", type=int, default=10_000, help="numbers in the drained batch")
    parser.add_argument(
        "--sizes", default="1000,10000", help="batch sizes whose accept time is measured"
    )
    parser.add_argument("--singles", type=int, default=5, help="single calls beside the drain")
    parser.add_argument("--attempts", type=int, default=5, help="accepts measured per size")
    parser.add_argument("--out", default="bench/results")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with bench_system("batch", "simulator", "call-log", "gateway", "dialer") as system:
        results = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "dialer_cps": 1,
            **asyncio.run(run(system, args.drain, sizes, args.singles, args.attempts)),
        }
    print(f"written to {write_results('batch', results, args.out)}")


if __name__ == "__main__":
    main()
