"""Batch benchmark: accept time for 1,000 and 10,000 numbers, batch status time at 10,000,
and how long a single call waits to be dialed while a 10,000-number batch drains.

    make bench-batch

Runs the whole system (gateway, call log, dialer, carrier simulator) as real processes on
this machine against a fresh database, at the default DIALER_CPS=1.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from calls_testing.system import SIM_ACCOUNT_SID, SIM_AUTH_TOKEN
from gateway.auth import issue_token
from harness import JWT_SECRET, percentile, prepare_database, private_vhost, start, wait_ready

GATEWAY = "http://127.0.0.1:18080"
SIMULATOR = "http://127.0.0.1:18090"


def numbers(n: int, prefix: int) -> list[str]:
    return [f"+1{prefix:03d}555{i:04d}" for i in range(n)]


async def timed(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    async with http.request(method, url, **kw) as resp:
        body = await resp.json()
        assert resp.status < 300, body
    return (time.perf_counter() - t0) * 1000, body


async def single_call_waits(http: aiohttp.ClientSession, runs: int) -> list[float]:
    """Seconds from POST /calls to the carrier's create request, for `runs` single calls."""
    waits = []
    for i in range(runs):
        await asyncio.sleep(2)
        single = f"+1303555{i:04d}"
        placed = time.time()
        await timed(
            http,
            "POST",
            f"{GATEWAY}/calls",
            json={"to_number": single, "from_number": "+14155550100"},
        )
        while True:
            async with http.get(f"{SIMULATOR}/_sim/calls") as resp:
                calls = (await resp.json())["calls"]
            dialed = [c["created_at"] for c in calls if c["to"] == single]
            if dialed:
                waits.append(dialed[0] - placed)
                break
            await asyncio.sleep(0.05)
    return waits


async def run() -> dict[str, Any]:
    token = issue_token(JWT_SECRET, organization_id="org_batch", subject="bench", ttl_seconds=3600)
    headers = {"Authorization": f"Bearer {token}"}
    results: dict[str, Any] = {}
    async with aiohttp.ClientSession(headers=headers) as http:
        # 1. a 10,000-number batch draining at 1 call per second; single calls beside it
        body = {"to_numbers": numbers(10_000, 250), "from_number": "+14155550100"}
        _, drain = await timed(http, "POST", f"{GATEWAY}/calls/batch", json=body)
        first_read, _ = await timed(http, "GET", f"{GATEWAY}/calls/batch/{drain['batch_id']}")
        results["first status read after accepting 10,000 (ms)"] = first_read
        waits = await single_call_waits(http, 5)
        results["single call dialed while 10,000 drain (s)"] = {
            "p50": percentile(waits, 50),
            "max": max(waits),
            "runs": len(waits),
        }
        print(f"single call wait: {results['single call dialed while 10,000 drain (s)']}")
        status = [
            (await timed(http, "GET", f"{GATEWAY}/calls/batch/{drain['batch_id']}"))[0]
            for _ in range(30)
        ]
        results["status at 10,000"] = {
            "p50_ms": percentile(status, 50),
            "p99_ms": percentile(status, 99),
        }
        print(f"status: {results['status at 10,000']}", flush=True)
        await timed(http, "POST", f"{GATEWAY}/calls/batch/{drain['batch_id']}/cancel")

        # 2. accept time (each batch canceled right away)
        for size, prefix in ((1_000, 201), (10_000, 202)):
            samples = []
            for attempt in range(5):
                await asyncio.sleep(2)
                body = {
                    "to_numbers": numbers(size, prefix + 10 * attempt),
                    "from_number": "+14155550100",
                }
                ms, batch = await timed(http, "POST", f"{GATEWAY}/calls/batch", json=body)
                samples.append(ms)
                await timed(http, "POST", f"{GATEWAY}/calls/batch/{batch['batch_id']}/cancel")
            label = f"accept {size:,}"
            results[label] = {"p50_ms": percentile(samples, 50), "max_ms": max(samples)}
            print(f"{label}: {results[label]}", flush=True)
    return results


def main() -> None:
    url = os.environ.get(
        "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/calls_batch_bench"
    )
    prepare_database(url, keep=False)
    env = {
        "DATABASE_URL": url,
        "JWT_SECRET": JWT_SECRET,
        "LOG_LEVEL": "WARNING",
        "GATEWAY_PORT": "18080",
        "CALL_LOG_PORT": "18081",
        "DIALER_PORT": "18082",
        "SIM_PORT": "18090",
        "CALL_LOG_URL": "http://127.0.0.1:18081",
        "PUBLIC_BASE_URL": GATEWAY,
        "TWILIO_API_URL": SIMULATOR,
        "TWILIO_ACCOUNT_SID": SIM_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": SIM_AUTH_TOKEN,
        "SIM_RING_SECONDS": "0.2",
        "SIM_TALK_SECONDS": "0.5",
    }
    for module in ("gateway", "dialer", "call_log"):
        subprocess.run(
            [sys.executable, "-m", module, "migrate"],
            env={**os.environ, **env},
            check=True,
            capture_output=True,
        )
    with private_vhost("calls_bench_batch") as amqp_url:
        env["AMQP_URL"] = amqp_url
        results = measure(env)
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"batch-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")


def measure(env: dict[str, str]) -> dict[str, Any]:
    procs = [start(m, env) for m in ("carrier_sim", "call_log", "gateway", "dialer")]
    try:
        for port in (18090, 18081, 18080, 18082):
            asyncio.run(wait_ready(f"http://127.0.0.1:{port}"))
        results = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "dialer_cps": 1,
            **asyncio.run(run()),
        }
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
    return results


if __name__ == "__main__":
    main()
