"""Scenario 2: the call-log projector, then the gateway, are killed (-9) mid-batch and
restarted. While the gateway is down the carrier's callbacks are lost (Twilio does not retry
them): the dialer's watchdog must ask the carrier instead."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.chaos.harness import (
    BATCH_SIZE,
    MakeSystem,
    Workload,
    start_batch,
    verify,
    wait_for_dials,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


async def test_call_log_and_gateway_killed_mid_batch(make_system: MakeSystem) -> None:
    chaos = await make_system("service-kills")
    workload = Workload(org="org_chaos_kills")
    async with aiohttp.ClientSession() as http:
        await start_batch(http, chaos, workload, dialed=BATCH_SIZE // 4)
        chaos.kill("call-log")
        await workload.single(http, chaos)  # accepted without the call log
        await asyncio.sleep(1.0)
        chaos.service("call-log").start()  # comes up while the batch goes on

        dialed_at_gateway_kill = len(await wait_for_dials(http, chaos, BATCH_SIZE // 2))
        chaos.kill("gateway")
        await asyncio.sleep(2.0)  # callbacks for calls in progress fail meanwhile
        single = asyncio.create_task(workload.single(http, chaos))
        await chaos.restart("gateway")
        await single  # retried with its Idempotency-Key until the gateway is back
        await chaos.ready("call-log")

        report = await verify(http, chaos, workload)

    assert dialed_at_gateway_kill < BATCH_SIZE  # the kill landed mid-batch
    # callbacks lost while the gateway was down were made up for by asking the carrier
    sources = report.reports_by_source()
    assert sources["reconciliation"] > 0, sources
    print(
        f"\nservice-kills: {workload.expected_calls} calls, {len(report.dials)} dials,"
        f" carrier reports by {dict(sources)}, settled {report.settle_seconds:.1f}s"
    )
