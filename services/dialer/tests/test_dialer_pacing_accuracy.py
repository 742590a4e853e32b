"""The dial rate holds at DIALER_CPS however long claiming a dial takes (measured at the carrier
simulator: with the claim's time added to every interval, 20 CPS dialed 14 calls a second)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from calls_platform.db import Conn, Pool

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Rig

pytestmark = pytest.mark.integration


class SlowPool:
    """A pool whose every connection takes `delay` seconds to get (a slow claim)."""

    def __init__(self, pool: Pool, delay: float) -> None:
        self._pool = pool
        self._delay = delay

    @contextlib.asynccontextmanager
    async def connection(self, *args: Any, **kwargs: Any) -> AsyncIterator[Conn]:
        await asyncio.sleep(self._delay)
        async with self._pool.connection(*args, **kwargs) as conn:
            yield conn


async def test_the_time_a_claim_takes_does_not_stretch_the_interval(rig: Rig) -> None:
    requested = [await rig.calls.enqueued("org_a", batch_id="batch-steady") for _ in range(11)]
    slow = SlowPool(rig.pool, 0.05)
    # 5 CPS: room for a claim slowed further by a busy machine (a claim longer than the
    # interval bounds the rate whatever the bucket does), while the 50 ms stays plain to see
    rig.start(pool=slow, calls_per_second=5)

    async def all_dialed() -> bool:
        return len(await rig.sim.calls()) == len(requested)

    await rig.wait(all_dialed, within=15, what="all dialed")
    created = sorted(c["created_at"] for c in await rig.sim.calls())
    mean_gap = (created[-1] - created[0]) / (len(created) - 1)
    # 0.2 s apart; with the 50 ms claim added to every interval it would be 0.25 s
    assert 0.19 <= mean_gap < 0.235, mean_gap
