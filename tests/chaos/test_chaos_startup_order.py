"""Scenario 7: a fresh deployment comes up in a random order while calls are already arriving.
Nothing is migrated beforehand: each service migrates its own schema (and, where it uses
RabbitMQ, declares the topology) as it starts. Calls are posted from the first moment (retried
until the gateway accepts them); whichever of the dialer, recordings service and call log comes
up after the gateway's relay has published, every accepted call must be dialed exactly once.
The intake watchdogs are set out of reach: the queues alone must deliver (they must have taken
in nothing). The carrier simulator, standing for Twilio, is up first.

CHAOS_SEED=N replays one order (printed by every run)."""

from __future__ import annotations

import asyncio
import os
import random

import aiohttp
import pytest
from calls_testing.metrics import metric

from tests.chaos.harness import MakeSystem, Workload, numbers, verify

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

SINGLES = 12


async def test_services_started_in_random_order_while_calls_arrive(
    make_system: MakeSystem,
) -> None:
    seed = int(os.environ.get("CHAOS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    chaos = await make_system(
        "startup-order",
        started=False,
        extra_env={
            "DIALER_INTAKE_GRACE_SECONDS": "3600",
            "RECORDINGS_INTAKE_GRACE_SECONDS": "3600",
        },
    )
    ours = ["gateway", "dialer", "call-log", "recordings", "webhooks"]
    order = rng.sample(ours, k=len(ours))
    print(f"\nstartup-order: seed {seed}, order {order}")
    workload = Workload(org="org_chaos_startup")
    async with aiohttp.ClientSession() as http:
        await chaos.restart("simulator")

        async def keep_calling() -> None:
            for to_number in numbers(SINGLES):
                await workload.single(http, chaos, to_number)  # retried until accepted
                await asyncio.sleep(0.25)

        arriving = asyncio.create_task(keep_calling())
        batch = asyncio.create_task(workload.batch(http, chaos, numbers(40)))
        for name in order:
            chaos.service(name).start()
            await asyncio.sleep(rng.uniform(0.5, 4.0))
        for name in order:
            await chaos.ready(name)
        await asyncio.gather(arriving, batch)

        dialer = await metric(http, chaos.service("dialer").url, "dials_taken_in_by_watchdog_total")
        report = await verify(http, chaos, workload)

    # every accepted call was dialed, exactly once, by way of the queue
    assert workload.expected_calls == SINGLES + 40
    assert all(view["call_sid"] for view in report.calls.values()), "a call was never dialed"
    assert len(report.dials) == workload.expected_calls
    assert dialer == 0.0
    print(
        f"startup-order: {workload.expected_calls} calls, {len(report.dials)} dials,"
        f" settled {report.settle_seconds:.1f}s"
    )
