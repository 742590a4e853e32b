"""Scenario 4: PostgreSQL (a private cluster: the shared server is never touched) is
restarted mid-batch. Every service reconnects by itself within seconds: pools, leadership
locks, LISTEN connections, the relay and the projector; a request refused meanwhile is
retried with its Idempotency-Key and recorded once."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from tests.chaos.harness import (
    BATCH_SIZE,
    FROM_NUMBER,
    MakeSystem,
    PrivatePostgres,
    Workload,
    numbers,
    start_batch,
    until,
    verify,
    wait_for_dials,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


async def test_postgres_restarted_mid_batch(
    private_postgres: PrivatePostgres, make_system: MakeSystem
) -> None:  # the server first: it must outlive the services
    chaos = await make_system("postgres-restart", postgres=private_postgres)
    workload = Workload(org="org_chaos_pg")
    async with aiohttp.ClientSession() as http:
        dialed_at_restart = await start_batch(http, chaos, workload)

        await asyncio.to_thread(private_postgres.restart)

        async def accepting() -> bool:
            # a probe without retries: does the gateway take a request again?
            headers = {**chaos.auth(workload.org), "Idempotency-Key": uuid.uuid4().hex}
            body = {"to_number": numbers(1)[0], "from_number": FROM_NUMBER}
            try:
                async with http.post(f"{chaos.gateway}/calls", json=body, headers=headers) as r:
                    if r.status == 202:
                        workload.accepted((await r.json())["call_id"])
                        return True
                    return False
            except aiohttp.ClientError:
                return False

        reconnected_in = await until(accepting, 30, "the gateway to accept calls again")

        async def dialing_again() -> bool:
            return len(await wait_for_dials(http, chaos, 0)) > dialed_at_restart + 20

        dialing_in = await until(dialing_again, 30, "the dialer to dial again")
        await workload.single(http, chaos)
        report = await verify(http, chaos, workload)

    assert dialed_at_restart < BATCH_SIZE  # restarted mid-batch
    assert reconnected_in < 10
    print(
        f"\npostgres-restart: gateway accepting {reconnected_in:.1f}s after the restart,"
        f" 20 more dials {dialing_in:.1f}s later, {workload.expected_calls} calls,"
        f" {len(report.dials)} dials, settled {report.settle_seconds:.1f}s"
    )
