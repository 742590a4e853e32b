"""The stale-call watchdog against the simulator with callbacks dropped on purpose: a call
whose callbacks never arrived still ends in its true state, recorded once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from calls_events import CallStatusReported
from calls_platform.db import Pool
from calls_testing import plans
from calls_testing.simulator import LocalSimulator
from dialer import attempts, claims, watchdog
from dialer.carrier import DialRequest, Placed
from dialer.twilio_carrier import TwilioCarrier
from dialer.watchdog import StaleCallWatchdog

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Calls

pytestmark = pytest.mark.integration


async def dial_with_callbacks_lost(
    pool: Pool, calls: Calls, carrier: TwilioCarrier, sim: LocalSimulator
) -> Any:
    await sim.control("POST", "/_sim/faults", {"drop_callbacks": True})
    event = await calls.enqueued("org_a")
    async with pool.connection() as conn:
        dial = await claims.claim_next(conn)
    assert dial is not None
    result = await carrier.create_call(
        DialRequest(str(dial.call_id), "org_a", dial.to_number, dial.from_number, record=False)
    )
    assert isinstance(result, Placed)
    async with pool.connection() as conn:
        await attempts.mark_initiated(conn, dial.call_id, result.call_sid, "dial")
    return event, result.call_sid


async def wait_until_the_carrier_ends(sim: LocalSimulator, call_sid: str) -> None:
    for _ in range(100):
        if [c for c in await sim.calls() if c["sid"] == call_sid and c["status"] == "completed"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the simulated call never ended")


async def test_call_with_lost_callbacks_is_completed_from_the_carrier_once(
    pool: Pool, calls: Calls, carrier: TwilioCarrier, sim: LocalSimulator
) -> None:
    event, call_sid = await dial_with_callbacks_lost(pool, calls, carrier, sim)
    await wait_until_the_carrier_ends(sim, call_sid)
    watchdog = StaleCallWatchdog(pool, carrier, stale_after_seconds=0)

    assert await watchdog.check_once() == 1
    reports = await calls.events(event.call_id, CallStatusReported)
    assert len(reports) == 1
    assert reports[0].carrier_status == "completed"
    assert reports[0].source == "reconciliation"
    assert reports[0].call_sid == call_sid
    assert reports[0].duration_seconds is not None

    assert await watchdog.check_once() == 0  # ended: never asked about again
    assert len(await calls.events(event.call_id, CallStatusReported)) == 1


async def test_a_call_the_carrier_does_not_know_does_not_hold_up_the_others(
    pool: Pool, calls: Calls, carrier: TwilioCarrier, sim: LocalSimulator
) -> None:
    """Found trying a restart by hand: the simulator forgot the calls placed before it
    restarted, the watchdog's pass failed on the first one's 404 every 5 s, and the quiet
    calls behind it were never asked about (the oldest is always first)."""
    forgotten, _ = await dial_with_callbacks_lost(pool, calls, carrier, sim)
    async with pool.connection() as conn:  # a SID the carrier has no call of, dialed first
        await conn.execute(
            "UPDATE dialer.dials SET call_sid = %s, finished_at = now() - interval '1 hour'"
            " WHERE call_id = %s",
            ("CA" + "0" * 32, forgotten.call_id),
        )
    event, call_sid = await dial_with_callbacks_lost(pool, calls, carrier, sim)
    await wait_until_the_carrier_ends(sim, call_sid)
    watchdog = StaleCallWatchdog(pool, carrier, stale_after_seconds=60)
    async with pool.connection() as conn:  # both quiet for longer, the unknown one longest
        for call_id, quiet in ((forgotten.call_id, "10 minutes"), (event.call_id, "2 minutes")):
            await conn.execute(
                "UPDATE dialer.dials SET carrier_news_at = now() - %s::interval WHERE call_id = %s",
                (quiet, call_id),
            )

    assert await watchdog.check_once() == 1
    [report] = await calls.events(event.call_id, CallStatusReported)
    assert report.carrier_status == "completed"
    assert await calls.events(forgotten.call_id, CallStatusReported) == []
    # asked, and not asked again until it is quiet for stale_after_seconds once more
    assert (await calls.dial(forgotten.call_id))["carrier_news_at"] > datetime.now(UTC) - timedelta(
        seconds=30
    )


async def test_a_call_with_recent_news_is_not_asked_about(
    pool: Pool, calls: Calls, carrier: TwilioCarrier, sim: LocalSimulator
) -> None:
    event, _ = await dial_with_callbacks_lost(pool, calls, carrier, sim)
    watchdog = StaleCallWatchdog(pool, carrier, stale_after_seconds=3600)
    assert await watchdog.check_once() == 0
    assert await calls.events(event.call_id, CallStatusReported) == []


async def test_a_terminal_callback_takes_the_call_off_the_watch_list(
    pool: Pool, calls: Calls, carrier: TwilioCarrier, sim: LocalSimulator
) -> None:
    event, _ = await dial_with_callbacks_lost(pool, calls, carrier, sim)
    await calls.carrier_says(event.call_id, "completed", "ringing")  # ringing late: ignored
    assert (await calls.dial(event.call_id))["carrier_status"] == "completed"
    watchdog = StaleCallWatchdog(pool, carrier, stale_after_seconds=0)
    assert await watchdog.check_once() == 0


async def test_a_call_in_progress_whose_completion_callback_was_lost_is_asked_about_again(
    pool: Pool, calls: Calls, carrier: TwilioCarrier, sim: LocalSimulator
) -> None:
    # found by the chaos suite (gateway killed mid-batch): the answered callback got through,
    # the completed one did not, and the call stayed in progress until DIALER_MAX_CALL_SECONDS
    # (4 h) had passed
    event, call_sid = await dial_with_callbacks_lost(pool, calls, carrier, sim)
    await calls.carrier_says(event.call_id, "in-progress")
    await wait_until_the_carrier_ends(sim, call_sid)

    patient = StaleCallWatchdog(pool, carrier, stale_after_seconds=0, in_progress_check_seconds=60)
    assert await patient.check_once() == 0  # news of it in progress is recent
    watchdog = StaleCallWatchdog(pool, carrier, stale_after_seconds=0, in_progress_check_seconds=0)
    assert await watchdog.check_once() == 1
    reports = await calls.events(event.call_id, CallStatusReported)
    assert [r.carrier_status for r in reports] == ["completed"]
    assert reports[0].source == "reconciliation"


async def test_the_stale_call_queries_read_their_index_in_the_plan_postgresql_caches(
    pool: Pool,
) -> None:
    """Every 5 s the watchdog asks for the dialed calls not known to have ended, among every
    dial ever made: in the generic plan PostgreSQL may cache, the dials_unfinished index, not a
    scan of the table (with the terminal statuses as a parameter it scanned every dial)."""
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO dialer.dials (call_id, organization_id, lane, to_number, from_number,"
            " record, state, requested_position, requested_event_id, call_sid, carrier_status,"
            " finished_at)"
            " SELECT gen_random_uuid(), 'org_a', 'org_a', '+15550100' || lpad(i::text, 6, '0'),"
            " '+15017122661', false, 'initiated', i, gen_random_uuid(), 'CA' || md5(i::text),"
            " CASE WHEN i % 1000 = 0 THEN 'in-progress' ELSE 'completed' END, now()"
            " FROM generate_series(1, 50000) i"
        )
        await conn.execute("ANALYZE dialer.dials")
        parameters = {"talking": "in-progress", "in_progress": 300, "quiet": 60, "batch": 50}
        shown = [
            await plans.plan(conn, statement, parameters)
            for statement in (watchdog.OLDEST_UNFINISHED_SQL, watchdog.STALE_CALLS_SQL)
        ]
    for plan in shown:
        assert plans.scans(plan) == [], plan
        assert "dials_unfinished" in plan, plan
