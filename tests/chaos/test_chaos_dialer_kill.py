"""Scenario 1: the dialer is killed (-9) mid-batch, some of its requests already created at
the carrier but not yet answered, and restarted. No call is lost, none is dialed twice."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.chaos.harness import (
    BATCH_SIZE,
    MakeSystem,
    Workload,
    set_faults,
    sim_calls,
    start_batch,
    until,
    verify,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

STALLED = 3  # create requests the carrier accepts but answers only after the kill


async def test_dialer_killed_mid_batch_and_between_the_carriers_answer_and_the_sid(
    make_system: MakeSystem,
) -> None:
    chaos = await make_system("dialer-kill")
    workload = Workload(org="org_chaos_dialer")
    async with aiohttp.ClientSession() as http:
        await start_batch(http, chaos, workload)

        # the carrier creates the next calls but holds its answers: the dialer has committed
        # 'dialing' and waits for the SID when it is killed
        before = (await sim_calls(http, chaos))["create_requests"]
        await set_faults(http, chaos, {"create_responses": [{"timeout_seconds": 1.5}] * STALLED})

        async def stalled() -> bool:
            return (await sim_calls(http, chaos))["create_requests"] >= before + STALLED

        await until(stalled, 10, "stalled create requests")
        killed_at = chaos.kill("dialer")
        created_at_kill = len((await sim_calls(http, chaos))["calls"])

        await workload.single(http, chaos)  # accepted while no dialer runs
        await asyncio.sleep(1.0)
        await chaos.restart("dialer")
        restarted_in = time.time() - killed_at
        await workload.single(http, chaos)

        report = await verify(http, chaos, workload)

    assert created_at_kill < BATCH_SIZE  # the kill landed mid-batch
    # the held answers never reached the killed dialer: their SIDs came from the carrier's
    # callbacks or from reconciliation, not from the create request
    sources = report.initiated_sources()
    assert sources["callback"] + sources["reconciliation"] >= STALLED, sources
    print(
        f"\ndialer-kill: {workload.expected_calls} calls, {len(report.dials)} dials,"
        f" SIDs learned by {dict(sources)}, dialer back {restarted_in:.1f}s after the kill,"
        f" settled {report.settle_seconds:.1f}s after the last request"
    )
