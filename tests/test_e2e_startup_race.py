"""The start-up race of issue #14, through real processes on a fresh database and vhost: the
gateway is ready and accepting calls, the dialer has never run (its queue was never declared
by it), and it starts only later. Every accepted call must be dialed, once, by way of the
queue: the topology is declared before the first publish (the gateway's migration, its relay),
so the requests wait in dialer.requests. The dialer's intake watchdog is set out of reach here
(an hour's grace) and must have taken in nothing: it would hide a loss, not show one.

`make startup-race` runs it 20 times with the dialer 10 s late (RACE_RUNS, RACE_DELAY); `make
test` runs it once, 3 s late."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import aiohttp
import pytest
from calls_testing.metrics import metric
from calls_testing.plugin import AmqpFactory, DatabaseFactory

from tests.chaos.harness import (
    chaos_system,
    dials_by_call,
    post_calls,
    private_databases,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

RUNS = int(os.environ.get("RACE_RUNS", "1"))
DELAY = float(os.environ.get("RACE_DELAY", "3"))


@pytest.fixture(scope="module")
def databases(database_factory: DatabaseFactory) -> Iterator[Callable[[str], str]]:
    with private_databases(database_factory) as create:
        yield create


CALLS = 5


@pytest.mark.parametrize("run", range(RUNS), ids=lambda n: f"run{n + 1}")
async def test_calls_accepted_before_the_dialer_first_started_are_each_dialed_once(
    run: int, databases: Callable[[str], str], amqp_factory: AmqpFactory
) -> None:
    label = f"race_{run}_{uuid.uuid4().hex[:6]}"
    chaos = await chaos_system(
        databases(label),
        amqp_factory(label),
        f"startup-race-{run}",
        started=False,
        migrate=False,  # a fresh deployment: each service migrates as it starts
        extra_env={"DIALER_INTAKE_GRACE_SECONDS": "3600"},
    )
    org = f"org_race_{run}"
    try:
        async with aiohttp.ClientSession() as http:
            for name in ("simulator", "gateway"):
                await chaos.restart(name)  # started, and ready
            accepted = await post_calls(http, chaos, org, CALLS)

            await asyncio.sleep(DELAY)  # the relay has published them all by now
            await chaos.restart("dialer")
            dialed = await dials_by_call(http, chaos, CALLS, 60)
            assert sum(dialed.values()) >= CALLS, "not every accepted call was dialed"
            assert dialed == Counter(accepted)  # each exactly once
            dialer = chaos.service("dialer").url
            assert await metric(http, dialer, "dials_taken_in_by_watchdog_total") == 0.0
    finally:
        chaos.close()
