"""The recordings service's intake watchdog, against the real event store and the carrier
simulator: a recording report whose message never reached the service's queue is captured
from the store once it is older than the grace; one already captured is left alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest
from calls_platform import eventstore
from calls_platform.db import Pool
from calls_testing import new_org_id
from prometheus_client import REGISTRY
from recordings.consumer import RecordingCapture
from recordings.domain import RetryPolicy
from recordings.download import RecordingDownloader
from recordings.intake import intake_watchdog
from recordings.storage import LocalStorage

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Reports, Sim

pytestmark = pytest.mark.integration


def taken_in() -> float:
    return REGISTRY.get_sample_value("recordings_taken_in_by_watchdog_total") or 0.0


@pytest.fixture
async def capture(pool: Pool, sim: Sim, tmp_path: Path) -> AsyncIterator[RecordingCapture]:
    async with aiohttp.ClientSession() as http:
        downloader = RecordingDownloader(
            http,
            account_sid=sim.config.account_sid,
            auth_token=sim.config.auth_token,
            max_bytes=1024 * 1024,
        )
        policy = RetryPolicy(max_attempts=2, base_seconds=0.01, max_seconds=0.05)
        yield RecordingCapture(pool, LocalStorage(tmp_path / "recordings"), downloader, policy)


async def test_a_report_that_never_arrived_is_captured_after_the_grace(
    pool: Pool, capture: RecordingCapture, reports: Reports, sim: Sim
) -> None:
    org = new_org_id()
    callback = await sim.recorded_call(channels="dual")
    lost = await reports.report(
        org,
        recording_url=callback["RecordingUrl"],
        recording_sid=callback["RecordingSid"],
        call_sid=callback["CallSid"],
    )
    handled = await reports.report(org, recording_url=None, status="absent")
    await capture(handled)  # the consumer had this one
    now = datetime.now(UTC)
    clock = {"now": now}
    watchdog = intake_watchdog(pool, capture, grace_seconds=60, clock=lambda: clock["now"])
    before = taken_in()
    async with pool.connection() as conn:
        # the watchdog reads below the oldest transaction running in the cluster, which
        # another test's may hold back: without this wait the report could still be unreadable
        # at the check after the grace (this test failed that way now and then)
        assert await eventstore.wait_readable(conn)

    await watchdog.check()  # within the grace: left for the queue
    assert await reports.find_row(callback["RecordingSid"]) is None

    clock["now"] = now + timedelta(seconds=61)
    await watchdog.check()
    row = await reports.row(callback["RecordingSid"])
    assert row is not None
    assert (row["state"], row["organization_id"]) == ("stored", org)
    assert row["reported_event_id"] == lost.event_id
    assert taken_in() == before + 1

    await watchdog.check()
    assert taken_in() == before + 1
