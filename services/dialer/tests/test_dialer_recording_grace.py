"""A recording callback lost alone (the call's status callbacks came): a recorded call that
ended `completed` has its recordings listed at the carrier once the grace has passed with no
RecordingReported for it; one whose recording callback came is never asked about."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import pytest
from calls_events import CallStatusReported, Envelope, RecordingReported, call_stream
from calls_platform import topology
from calls_platform.db import Pool
from dialer import attempts, claims, dial_queue
from dialer.carrier import Carrier, CarrierRecording
from dialer.consumer import QUEUES, Handlers
from dialer.fake_carrier import FakeCarrier
from dialer.watchdog import StaleCallWatchdog

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Calls

pytestmark = pytest.mark.integration

ACCOUNT_URL = "https://api.twilio.com/2010-04-01/Accounts/AC" + "1" * 32


def completed_recording() -> CarrierRecording:
    sid = "RE" + uuid.uuid4().hex
    return CarrierRecording(
        sid=sid,
        status="completed",
        url=f"{ACCOUNT_URL}/Recordings/{sid}",
        duration_seconds=4,
        channels=2,
        source="OutboundAPI",
    )


async def placed(pool: Pool, calls: Calls, *, record: bool = True) -> tuple[uuid.UUID, str]:
    envelope, event = await calls.requested("org_a", record=record)
    sid = "CA" + uuid.uuid4().hex
    async with pool.connection() as conn:
        assert await dial_queue.enqueue(conn, envelope, event)
        dial = await claims.claim_next(conn)
        assert dial is not None
        assert dial.call_id == event.call_id
        assert await attempts.mark_initiated(conn, dial.call_id, sid, "dial")
    return event.call_id, sid


def status_callback(call_id: uuid.UUID, sid: str, status: str) -> Envelope:
    return Envelope.wrap(
        CallStatusReported(
            call_id=call_id,
            call_sid=sid,
            carrier_status=status,
            reported_at=datetime.now(UTC),
        ),
        stream_id=call_stream(call_id),
        organization_id="org_a",
    )


def recording_report(
    call_id: uuid.UUID, sid: str, via: Literal["callback", "reconciliation"] = "callback"
) -> Envelope:
    recording = completed_recording()
    return Envelope.wrap(
        RecordingReported(
            call_id=call_id,
            call_sid=sid,
            recording_sid=recording.sid,
            recording_url=recording.url,
            status="completed",
            duration_seconds=4,
            channels=2,
            reported_via=via,
        ),
        stream_id=call_stream(call_id),
        organization_id="org_a",
    )


def the_watchdog(pool: Pool, carrier: Carrier) -> StaleCallWatchdog:
    # asks no call's status (none is stale): lists the recordings of the calls due
    return StaleCallWatchdog(pool, carrier, stale_after_seconds=3600, recording_grace_seconds=0)


def test_the_dialers_queue_receives_recording_reports() -> None:
    assert topology.DIALER_REQUESTS in QUEUES
    assert RecordingReported.TYPE in topology.queue(topology.DIALER_REQUESTS).bindings


async def test_a_completed_call_whose_recording_callback_never_came_is_listed_after_the_grace(
    pool: Pool, calls: Calls
) -> None:
    call_id, sid = await placed(pool, calls)
    recording = completed_recording()
    carrier = FakeCarrier()
    carrier.recordings[sid] = [recording]

    await Handlers(pool, recording_grace_seconds=0).handle_many(
        [status_callback(call_id, sid, s) for s in ("ringing", "in-progress", "completed")]
    )
    assert (await calls.dial(call_id))["recordings_due_at"] is not None

    assert await the_watchdog(pool, carrier).check_recordings_once() == 1
    assert carrier.listed == [sid]
    assert carrier.fetched == []  # asked no call\'s status
    [report] = await calls.events(call_id, RecordingReported)
    assert (report.recording_sid, report.reported_via) == (recording.sid, "reconciliation")
    assert (await calls.dial(call_id))["recordings_due_at"] is None


async def assert_not_asked(pool: Pool, carrier: FakeCarrier) -> None:
    """The watchdog lists no recordings, and asks no call's status."""
    assert await the_watchdog(pool, carrier).check_recordings_once() == 0
    assert carrier.listed == []
    assert carrier.fetched == []


async def test_within_the_grace_the_carrier_is_not_asked(pool: Pool, calls: Calls) -> None:
    call_id, sid = await placed(pool, calls)
    carrier = FakeCarrier()

    await Handlers(pool, recording_grace_seconds=300).handle_many(
        [status_callback(call_id, sid, "completed")]
    )
    row = await calls.dial(call_id)
    waited = (row["recordings_due_at"] - datetime.now(UTC)).total_seconds()
    assert 290 < waited <= 300

    await assert_not_asked(pool, carrier)


@pytest.mark.parametrize(
    "recording_first",
    [
        pytest.param(False, id="after-the-completed-one"),
        pytest.param(True, id="before-the-completed-one-in-the-same-delivery"),
    ],
)
async def test_a_recording_callback_that_came_calls_the_listing_off(
    pool: Pool, calls: Calls, recording_first: bool
) -> None:
    call_id, sid = await placed(pool, calls)
    carrier = FakeCarrier()
    handle = Handlers(pool, recording_grace_seconds=0)
    completed, recording = (
        status_callback(call_id, sid, "completed"),
        recording_report(call_id, sid),
    )

    if recording_first:
        await handle.handle_many([recording, completed])
    else:
        await handle.handle_many([completed])
        await handle.handle_many([recording])

    row = await calls.dial(call_id)
    assert row["recordings_due_at"] is None
    assert row["recording_reported_at"] is not None
    await assert_not_asked(pool, carrier)


async def test_the_dialers_own_reports_do_not_count_as_a_callback(pool: Pool, calls: Calls) -> None:
    call_id, sid = await placed(pool, calls)
    handle = Handlers(pool, recording_grace_seconds=0)

    await handle.handle_many([recording_report(call_id, sid, via="reconciliation")])
    await handle.handle_many([status_callback(call_id, sid, "completed")])

    row = await calls.dial(call_id)
    assert row["recording_reported_at"] is None
    assert row["recordings_due_at"] is not None


async def test_calls_not_recorded_or_not_completed_are_never_listed(
    pool: Pool, calls: Calls
) -> None:
    unrecorded, unrecorded_sid = await placed(pool, calls, record=False)
    busy, busy_sid = await placed(pool, calls)
    carrier = FakeCarrier()

    await Handlers(pool, recording_grace_seconds=0).handle_many(
        [
            status_callback(unrecorded, unrecorded_sid, "completed"),
            status_callback(busy, busy_sid, "busy"),
        ]
    )

    assert (await calls.dial(unrecorded))["recordings_due_at"] is None
    assert (await calls.dial(busy))["recordings_due_at"] is None
    await assert_not_asked(pool, carrier)
