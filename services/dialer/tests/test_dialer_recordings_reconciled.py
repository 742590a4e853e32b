"""The watchdog makes up for lost recording callbacks: a recorded call it finds `completed` by
asking has its recordings listed at the carrier and recorded as the RecordingReported the
gateway would have appended for their callbacks, under the same event id; and a call found
ended is reported as of the carrier's end time."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from calls_events import CallStatusReported, Envelope, RecordingReported, call_stream
from calls_platform import eventstore
from calls_platform.db import Pool
from calls_platform.report_ids import recording_reported_id
from calls_testing.receiver import Receiver
from calls_testing.simulator import LocalSimulator
from dialer import attempts, claims, dial_queue
from dialer.carrier import Carrier, CarrierCall, CarrierRecording, DialRequest, Placed
from dialer.fake_carrier import FakeCarrier
from dialer.twilio_carrier import TwilioCarrier
from dialer.watchdog import StaleCallWatchdog

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Calls

pytestmark = pytest.mark.integration

ACCOUNT_URL = "https://api.twilio.com/2010-04-01/Accounts/AC" + "1" * 32
ENDED_AT = datetime(2024, 5, 1, 12, 0, 7, tzinfo=UTC)


def new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def listed(status: str, sid: str | None = None) -> CarrierRecording:
    sid = sid or new_sid("RE")
    return CarrierRecording(
        sid=sid,
        status=status,
        url=f"{ACCOUNT_URL}/Recordings/{sid}",
        duration_seconds=4,
        channels=2,
        source="OutboundAPI",
    )


async def placed(pool: Pool, calls: Calls, *, record: bool, sid: str | None = None) -> Any:
    """A call the dialer placed (no callback since): its CallRequested and SID."""
    envelope, event = await calls.requested("org_a", record=record)
    async with pool.connection() as conn:
        assert await dial_queue.enqueue(conn, envelope, event)
        dial = await claims.claim_next(conn)
        assert dial is not None
        assert dial.call_id == event.call_id
        call_sid = sid or new_sid("CA")
        assert await attempts.mark_initiated(conn, dial.call_id, call_sid, "dial")
    return event, call_sid


async def found(
    pool: Pool, calls: Calls, carrier: FakeCarrier, status: str, *, record: bool, **call: Any
) -> Any:
    """A call the dialer placed that the carrier, when asked, says is in `status` (`call`:
    more of what it says): its CallRequested and SID."""
    event, sid = await placed(pool, calls, record=record)
    carrier.calls[sid] = CarrierCall(sid, status, **call)
    return event, sid


async def recorded_and_completed(pool: Pool, calls: Calls, carrier: FakeCarrier) -> Any:
    """A recorded call the carrier, when asked, says completed (4 s, at ENDED_AT)."""
    return await found(
        pool, calls, carrier, "completed", record=True, duration_seconds=4, end_time=ENDED_AT
    )


async def with_a_recording(
    pool: Pool, calls: Calls, carrier: FakeCarrier, status: str
) -> tuple[Any, str, CarrierRecording]:
    """A recorded call found completed whose one recording the carrier lists in `status`: its
    CallRequested, SID and recording."""
    event, sid = await recorded_and_completed(pool, calls, carrier)
    recording = listed(status)
    carrier.recordings[sid] = [recording]
    return event, sid, recording


def watchdog(pool: Pool, carrier: Carrier, **options: Any) -> StaleCallWatchdog:
    options.setdefault("stale_after_seconds", 0)
    return StaleCallWatchdog(pool, carrier, **options)


async def test_a_recorded_call_found_completed_gets_its_recording_reported_once(
    pool: Pool, calls: Calls
) -> None:
    carrier = FakeCarrier()
    event, sid, recording = await with_a_recording(pool, calls, carrier, "completed")

    assert await watchdog(pool, carrier).check_once() == 1

    [report] = await calls.events(event.call_id, RecordingReported)
    assert report == RecordingReported(
        call_id=event.call_id,
        call_sid=sid,
        recording_sid=recording.sid,
        recording_url=f"{ACCOUNT_URL}/Recordings/{recording.sid}",
        status="completed",
        duration_seconds=4,
        channels=2,
        source="OutboundAPI",
        reported_via="reconciliation",
    )
    async with pool.connection() as conn:
        stored = await eventstore.read_stream(conn, call_stream(event.call_id))
    [envelope] = [e for e in stored if e.event_type == RecordingReported.TYPE]
    assert envelope.event_id == recording_reported_id(event.call_id, recording.sid, "completed")
    assert envelope.organization_id == "org_a"

    # settled: never listed again
    assert await watchdog(pool, carrier).check_once() == 0
    assert carrier.listed == [sid]
    assert len(await calls.events(event.call_id, RecordingReported)) == 1


async def test_a_recording_whose_callback_got_through_is_not_stored_twice(
    pool: Pool, calls: Calls
) -> None:
    carrier = FakeCarrier()
    event, sid = await placed(pool, calls, record=True)
    recording = listed("completed")
    # the gateway's report of the callback, under the id it derives
    callback = RecordingReported(
        call_id=event.call_id,
        call_sid=sid,
        recording_sid=recording.sid,
        recording_url=recording.url,
        status="completed",
    )
    async with pool.connection() as conn:
        await eventstore.append(
            conn,
            [
                Envelope.wrap(
                    callback,
                    stream_id=call_stream(event.call_id),
                    organization_id="org_a",
                    event_id=recording_reported_id(event.call_id, recording.sid, "completed"),
                )
            ],
        )
    carrier.calls[sid] = CarrierCall(sid, "completed", duration_seconds=4, end_time=ENDED_AT)
    carrier.recordings[sid] = [recording]

    checker = watchdog(pool, carrier)
    assert await checker.check_once() == 1  # the status report
    assert carrier.listed == [sid]
    assert await calls.events(event.call_id, RecordingReported) == [callback]


async def test_a_recording_still_processing_is_asked_about_again_until_it_is_done(
    pool: Pool, calls: Calls
) -> None:
    carrier = FakeCarrier()
    event, sid, recording = await with_a_recording(pool, calls, carrier, "processing")

    await watchdog(pool, carrier, recordings_recheck_seconds=3600).check_once()
    assert await calls.events(event.call_id, RecordingReported) == []
    # not due for an hour: not asked
    assert await watchdog(pool, carrier, recordings_recheck_seconds=3600).check_once() == 0
    assert carrier.listed == [sid]
    assert (await calls.dial(event.call_id))["recordings_checks"] == 1

    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE dialer.dials SET recordings_due_at = now() WHERE call_id = %s",
            (event.call_id,),
        )
    carrier.recordings[sid] = [listed("completed", recording.sid)]
    assert await watchdog(pool, carrier).check_recordings_once() == 1
    [report] = await calls.events(event.call_id, RecordingReported)
    assert (report.recording_sid, report.status) == (recording.sid, "completed")
    assert (await calls.dial(event.call_id))["recordings_due_at"] is None


async def test_listing_that_keeps_failing_is_given_up_after_the_last_check(
    pool: Pool, calls: Calls
) -> None:
    carrier = FakeCarrier()
    event, sid = await recorded_and_completed(pool, calls, carrier)
    carrier.recordings[sid] = aiohttp.ClientConnectionError("carrier unreachable")
    other_event, other_sid = await found(
        pool, calls, carrier, "completed", record=True, end_time=ENDED_AT
    )
    carrier.recordings[other_sid] = [listed("completed")]

    checker = watchdog(pool, carrier, recordings_recheck_seconds=0, recordings_max_checks=3)
    assert await checker.check_once() == 2
    # one call's failure does not hold up the other's
    assert len(await calls.events(other_event.call_id, RecordingReported)) == 1
    for _ in range(4):
        await checker.check_recordings_once()
    assert carrier.listed.count(sid) == 3
    dial = await calls.dial(event.call_id)
    assert (dial["recordings_checks"], dial["recordings_due_at"]) == (3, None)
    assert await calls.events(event.call_id, RecordingReported) == []


async def test_only_recorded_calls_found_completed_have_their_recordings_listed(
    pool: Pool, calls: Calls
) -> None:
    carrier = FakeCarrier()
    await found(pool, calls, carrier, "completed", record=False, end_time=ENDED_AT)
    await found(pool, calls, carrier, "busy", record=True, end_time=ENDED_AT)
    await found(pool, calls, carrier, "in-progress", record=True)

    assert await watchdog(pool, carrier).check_once() == 3
    assert carrier.listed == []


async def test_a_call_found_ended_is_reported_as_of_the_carriers_end_time(
    pool: Pool, calls: Calls
) -> None:
    carrier = FakeCarrier()
    completed, _ = await found(pool, calls, carrier, "completed", record=False, end_time=ENDED_AT)
    busy, _ = await found(pool, calls, carrier, "busy", record=False, end_time=ENDED_AT)
    # the carrier's clock ahead of ours: never reported as after we found out
    in_an_hour = datetime.now(UTC) + timedelta(hours=1)
    ahead, _ = await found(pool, calls, carrier, "completed", record=False, end_time=in_an_hour)
    talking, _ = await found(pool, calls, carrier, "in-progress", record=False)

    before = datetime.now(UTC)
    assert await watchdog(pool, carrier).check_once() == 4
    after = datetime.now(UTC)

    [report] = await calls.events(completed.call_id, CallStatusReported)
    assert (report.carrier_status, report.reported_at) == ("completed", ENDED_AT)
    [report] = await calls.events(busy.call_id, CallStatusReported)
    assert (report.carrier_status, report.reported_at) == ("busy", ENDED_AT)
    [report] = await calls.events(ahead.call_id, CallStatusReported)
    assert before <= report.reported_at <= after
    [report] = await calls.events(talking.call_id, CallStatusReported)
    assert before <= report.reported_at <= after


# --- against the carrier simulator, through the real twilio library ----------------------------


async def test_through_the_simulator_a_lost_recording_callback_is_made_up_for(
    pool: Pool, calls: Calls, carrier: TwilioCarrier, sim: LocalSimulator, receiver: Receiver
) -> None:
    await sim.control("POST", "/_sim/faults", {"drop_callbacks": True})
    envelope, event = await calls.requested("org_a", record=True)
    async with pool.connection() as conn:
        assert await dial_queue.enqueue(conn, envelope, event)
        dial = await claims.claim_next(conn)
    assert dial is not None
    assert dial.record
    result = await carrier.create_call(
        DialRequest(str(dial.call_id), "org_a", dial.to_number, dial.from_number, record=True)
    )
    assert isinstance(result, Placed)
    async with pool.connection() as conn:
        await attempts.mark_initiated(conn, dial.call_id, result.call_sid, "dial")
    for _ in range(200):
        [made] = [c for c in await sim.calls() if c["sid"] == result.call_sid]
        if made["recording_sid"]:
            break
        await asyncio.sleep(0.02)
    assert made["status"] == "completed"
    assert made["recording_sid"]

    # the call has just ended: its recording callback is not waited for here
    watchdog = StaleCallWatchdog(pool, carrier, stale_after_seconds=0, recording_grace_seconds=0)
    assert await watchdog.check_once() == 1

    fetched = await carrier.fetch_call(result.call_sid)
    assert fetched.end_time is not None
    [status] = await calls.events(event.call_id, CallStatusReported)
    assert (status.carrier_status, status.reported_at) == ("completed", fetched.end_time)
    [report] = await calls.events(event.call_id, RecordingReported)
    assert report.recording_sid == made["recording_sid"]
    assert report.status == "completed"
    assert report.channels == 2
    assert report.reported_via == "reconciliation"
    # as the recording callback gives it: the account's recording, no extension
    account = f"{sim.url}/2010-04-01/Accounts/{sim.config.account_sid}"
    assert report.recording_url == f"{account}/Recordings/{made['recording_sid']}"
    auth = aiohttp.BasicAuth(sim.config.account_sid, sim.config.auth_token).encode()
    async with sim.session.get(
        f"{report.recording_url}.wav", headers={"Authorization": auth}
    ) as response:
        assert response.status == 200
        assert (await response.read())[:4] == b"RIFF"
    assert "/webhooks/twilio/recording" not in receiver.paths
