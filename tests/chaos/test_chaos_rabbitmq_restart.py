"""Scenario 3: RabbitMQ (a private node: the shared broker is never touched) is stopped
mid-batch (`rabbitmqctl stop_app`) and started again (`start_app`). Requests are still
accepted meanwhile; their events wait in the store (the outbox) until the broker is back, and
every consumer resumes by itself."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import psycopg
import pytest

from tests.chaos.harness import (
    BATCH_SIZE,
    MakeSystem,
    PrivateRabbit,
    Workload,
    numbers,
    start_batch,
    until,
    verify,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


async def outbox_backlog(database_url: str) -> int:
    conn = await psycopg.AsyncConnection.connect(database_url)
    async with conn:
        cur = await conn.execute(
            # events committed after the relay's (transaction_id, position) checkpoint
            "SELECT count(*) FROM eventstore.events e, eventstore.checkpoints c"
            " WHERE c.name = 'amqp-relay'"
            " AND (e.transaction_id, e.position) > (c.transaction_id, c.position)"
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_rabbitmq_restarted_mid_batch(
    private_rabbit: PrivateRabbit, make_system: MakeSystem
) -> None:  # the broker first: it must outlive the services
    chaos = await make_system("rabbitmq-restart", rabbit=private_rabbit)
    workload = Workload(org="org_chaos_rabbit")
    async with aiohttp.ClientSession() as http:
        dialed_at_stop = await start_batch(http, chaos, workload)

        await asyncio.to_thread(private_rabbit.stop_app)
        stopped_at = time.monotonic()
        # accepted while the broker is down: the 202 needs only the store
        await workload.single(http, chaos)
        await workload.batch(http, chaos, numbers(20))

        async def held() -> bool:
            return await outbox_backlog(chaos.database_url) > 0

        await until(held, 5, "events held in the outbox")
        backlog_while_down = await outbox_backlog(chaos.database_url)
        await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - stopped_at)))
        await asyncio.to_thread(private_rabbit.start_app)
        down_for = time.monotonic() - stopped_at

        async def drained() -> bool:
            return await outbox_backlog(chaos.database_url) == 0

        drained_in = await until(drained, 60, "the outbox to drain")
        await workload.single(http, chaos)
        report = await verify(http, chaos, workload)

    assert dialed_at_stop < BATCH_SIZE  # stopped mid-batch
    # at least the requests accepted while it was down: the single call, and the batch (one
    # event carrying its 20 calls)
    assert backlog_while_down >= 2
    print(
        f"\nrabbitmq-restart: broker down {down_for:.1f}s, {backlog_while_down} events held,"
        f" outbox drained {drained_in:.1f}s after start_app, {workload.expected_calls} calls,"
        f" {len(report.dials)} dials, settled {report.settle_seconds:.1f}s"
    )
