"""Dial pacing accuracy: how evenly the dialer spaces its dials at DIALER_CPS, measured where
it matters, at the carrier (the simulator's creation timestamp of each call).

    make bench-pacing                                   # 1 CPS for 600 s, then 20 CPS for 60 s
    uv run python bench/pacing_bench.py --cps 1 --duration 600
    uv run python bench/pacing_bench.py --cps 20 --duration 60

The whole system runs as real processes (gateway, call log, dialer, carrier simulator). One
batch with more numbers than the dialer can dial in the run keeps it busy throughout; after
`duration` seconds from the first dial the batch is canceled and the gaps between
consecutive dials are compared with the ideal 1/CPS.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
from harness import (
    System,
    bench_parser,
    bench_system,
    machine,
    memory_of,
    percentile,
    write_results,
)


def gap_figures(created: list[float], cps: float) -> dict[str, Any]:
    """Figures of the inter-dial gaps against the ideal 1/cps (milliseconds)."""
    ideal = 1 / cps
    gaps = [b - a for a, b in itertools.pairwise(created)]
    deviations = [abs(g - ideal) * 1000 for g in gaps]
    span = created[-1] - created[0]
    return {
        "dials": len(created),
        "span_s": round(span, 3),
        "achieved_cps": round((len(created) - 1) / span, 4),
        "ideal_gap_ms": round(ideal * 1000, 3),
        "gap_mean_ms": round(statistics.fmean(gaps) * 1000, 3),
        "gap_min_ms": round(min(gaps) * 1000, 3),
        "gap_max_ms": round(max(gaps) * 1000, 3),
        "deviation_mean_ms": round(statistics.fmean(deviations), 3),
        "deviation_p50_ms": round(percentile(deviations, 50), 3),
        "deviation_p99_ms": round(percentile(deviations, 99), 3),
        "deviation_max_ms": round(max(deviations), 3),
        # where the worst gaps were (wall-clock time of the dial that ended each), to tell a
        # pacing error from an outage (a restarted database costs the dialer its leadership)
        "largest_gaps": [
            {"ended_at": datetime.fromtimestamp(t, UTC).isoformat(), "gap_ms": round(g * 1000, 1)}
            for g, t in sorted(zip(gaps, created[1:], strict=True), reverse=True)[:5]
        ],
        "smallest_gaps": [
            {"ended_at": datetime.fromtimestamp(t, UTC).isoformat(), "gap_ms": round(g * 1000, 1)}
            for g, t in sorted(zip(gaps, created[1:], strict=True))[:5]
        ],
    }


async def run(system: System, cps: float, duration: float) -> dict[str, Any]:
    gateway, simulator = system.gateway, system.simulator
    numbers = [f"+1212555{i:04d}" for i in range(int(cps * duration * 1.2) + 50)]
    async with aiohttp.ClientSession(headers=system.auth("org_pacing")) as http:
        body = {"to_numbers": numbers, "from_number": "+14155550100", "record": False}
        async with http.post(f"{gateway}/calls/batch", json=body) as resp:
            batch = await resp.json()
            assert resp.status == 202, batch
        while True:  # the first dial starts the clock
            async with http.get(f"{simulator}/_sim/calls") as resp:
                if (await resp.json())["calls"]:
                    break
            await asyncio.sleep(0.2)
        print(f"dialing at {cps} CPS for {duration} s ...", flush=True)
        await asyncio.sleep(duration)
        async with http.post(f"{gateway}/calls/batch/{batch['batch_id']}/cancel") as resp:
            assert resp.status < 300, await resp.text()
        await asyncio.sleep(1)
        async with http.get(f"{simulator}/_sim/calls") as resp:
            state = await resp.json()
            calls = state["calls"]
    print(f"create requests at the carrier: {state['create_requests']}, calls: {len(calls)}")
    created = sorted(c["created_at"] for c in calls)
    # only the gaps inside the measured window (from the first dial, `duration` seconds)
    created = [t for t in created if t <= created[0] + duration]
    return gap_figures(created, cps)


def parse_args() -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--cps", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of dialing")
    parser.add_argument("--port-base", type=int, default=19100)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    name = f"pacing_{str(args.cps).replace('.', '_')}"
    results: dict[str, Any] = {
        "machine": machine(),
        "dialer_cps": args.cps,
        "duration_s": args.duration,
        "started_at": time.time(),
    }
    with bench_system(
        name,
        *("simulator", "call-log", "gateway", "dialer"),
        env={"DIALER_CPS": str(args.cps)},
        port_base=args.port_base,
    ) as system:
        results["pacing"] = asyncio.run(run(system, args.cps, args.duration))
        results["memory_kib_after"] = memory_of(system)
    results["load_average_at_end"] = os.getloadavg()
    print(results["pacing"], flush=True)
    print(f"written to {write_results(name.replace('_', '-', 1), results)}")


if __name__ == "__main__":
    main()
