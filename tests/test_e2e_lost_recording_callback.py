"""A recorded call whose status callbacks all arrive but whose recording callback alone is
lost, through every service as a real process: the dialer, having seen the call end
`completed` and no RecordingReported within DIALER_RECORDING_GRACE_SECONDS (2 s here), lists
its recordings at the carrier and reports the one made, so it is still stored and served. And
a call whose recording callback does arrive is never listed at the carrier."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from calls_testing import new_org_id, unique_number
from calls_testing.audio import assert_wav
from calls_testing.system import System

from tests.conftest import download_recording, place_call, recording_stored

pytestmark = pytest.mark.integration


@pytest.fixture
async def recording_callbacks_dropped(
    system: System, http: aiohttp.ClientSession
) -> AsyncIterator[None]:
    """The carrier sends no recording callback while the test runs; status callbacks come
    (lifted afterwards, whatever happened)."""
    await system.sim(http).set_faults(drop_recording_callbacks=True)
    yield
    await system.sim(http).set_faults(drop_recording_callbacks=False)


async def place_recorded_call(http: aiohttp.ClientSession, system: System, org: str) -> str:
    return await place_call(http, system, org, from_number=unique_number(), record=True)


async def events(system: System, call_id: str, event_type: str) -> list[dict[str, Any]]:
    rows = await system.query(
        "SELECT data FROM eventstore.events WHERE stream_id = %s AND event_type = %s"
        " ORDER BY position",
        f"call-{call_id}",
        event_type,
    )
    return [row["data"] for row in rows]


async def dial_row(system: System, call_id: str) -> tuple[Any, Any, int]:
    [row] = await system.query(
        "SELECT recordings_due_at, recording_reported_at, recordings_checks"
        " FROM dialer.dials WHERE call_id = %s",
        uuid.UUID(call_id),
    )
    return row["recordings_due_at"], row["recording_reported_at"], row["recordings_checks"]


async def test_a_recording_whose_callback_alone_was_lost_is_still_fetched(
    system: System, http: aiohttp.ClientSession, recording_callbacks_dropped: None
) -> None:
    org = new_org_id()
    call_id = await place_recorded_call(http, system, org)

    call = await recording_stored(http, system, org, call_id)

    assert (call["status"], call["outcome"]) == ("completed", "completed")
    # the call's end came by its callback: nothing was reconciled but the recording
    statuses = await events(system, call_id, "CallStatusReported")
    assert "completed" in [s["carrier_status"] for s in statuses]
    assert {s["source"] for s in statuses} == {"callback"}
    [report] = await events(system, call_id, "RecordingReported")
    assert report["reported_via"] == "reconciliation"
    assert report["status"] == "completed"
    due_at, reported_at, checks = await dial_row(system, call_id)
    assert (due_at, reported_at, checks) == (None, None, 1)

    assert_wav(await download_recording(http, system, org, call_id))


async def test_a_recording_whose_callback_came_is_never_listed_at_the_carrier(
    system: System, http: aiohttp.ClientSession
) -> None:
    org = new_org_id()
    call_id = await place_recorded_call(http, system, org)

    await recording_stored(http, system, org, call_id)
    [report] = await events(system, call_id, "RecordingReported")
    assert report["reported_via"] == "callback"
    deadline = time.monotonic() + 10
    while (await dial_row(system, call_id))[1] is None:  # the dialer has seen the report
        assert time.monotonic() < deadline, "the dialer never saw the recording report"
        await asyncio.sleep(0.1)

    # past the grace (2 s) and a watchdog pass (every 5 s): still never listed
    await asyncio.sleep(8)
    due_at, reported_at, checks = await dial_row(system, call_id)
    assert due_at is None
    assert reported_at is not None
    assert checks == 0
    assert [r["reported_via"] for r in await events(system, call_id, "RecordingReported")] == [
        "callback"
    ]
