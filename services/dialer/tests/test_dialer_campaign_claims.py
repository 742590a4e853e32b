"""Campaign rules at dial time, against the real PostgreSQL: do-not-call, pause and resume,
concurrency (per batch, per organization, one call per number), calling windows and
schedules decided against an injected clock, expiry, the daily cap, and retries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from calls_events import (
    BatchPaused,
    BatchResumed,
    CallExpired,
    CallingPolicySet,
    CallingWindow,
    CallRequested,
    CallRetryScheduled,
    CallScheduled,
    CallSkipped,
    CallStatusReported,
    DoNotCallAdded,
    DoNotCallRemoved,
    Envelope,
    Event,
    RetryPolicy,
    Schedule,
    call_stream,
    calling_policy_stream,
    do_not_call_stream,
)
from calls_platform import eventstore
from calls_platform.db import Pool
from dialer import attempts, campaigns, claims, dials
from dialer.carrier import CarrierCall
from dialer.consumer import Handlers
from dialer.watchdog import StaleCallWatchdog

pytestmark = pytest.mark.integration

# a Monday, 17:00 UTC: 12:00 in New York, 09:00 in Los Angeles (in the future: calls are
# enqueued due now, by the database's clock)
NOW = datetime(2027, 3, 1, 17, 0, tzinfo=UTC)
NEW_YORK_NUMBER = "+12125550142"
LOS_ANGELES_NUMBER = "+14155550142"


async def claim(pool: Pool, now: datetime = NOW) -> dials.Dial | None:
    async with pool.connection() as conn:
        return await claims.claim_next(conn, now)


async def claimed_id(pool: Pool, now: datetime = NOW) -> uuid.UUID | None:
    """The call the next claim takes (None: nothing to claim)."""
    dial = await claim(pool, now)
    return dial.call_id if dial else None


async def deliver(pool: Pool, org: str, stream: str, event: Event) -> Envelope:
    """Append an event as the gateway would and hand it to the dialer's consumer."""
    async with pool.connection() as conn:
        [recorded] = await eventstore.append(
            conn, [Envelope.wrap(event, stream_id=stream, organization_id=org)]
        )
    await Handlers(pool)(recorded)
    return recorded


async def org_a_sets(
    pool: Pool, event: DoNotCallAdded | DoNotCallRemoved | CallingPolicySet
) -> Envelope:
    """org_a changes its do-not-call list or its calling policy, as the gateway appends it."""
    stream = calling_policy_stream if isinstance(event, CallingPolicySet) else do_not_call_stream
    return await deliver(pool, "org_a", stream("org_a"), event)


async def report(
    pool: Pool, call_id: uuid.UUID, status: str, answered_by: str | None = None
) -> None:
    sid = "CA" + uuid.uuid4().hex
    async with pool.connection() as conn:
        await attempts.mark_initiated(conn, call_id, sid, "dial")
    await deliver(
        pool,
        "org_a",
        call_stream(call_id),
        CallStatusReported(
            call_id=call_id,
            call_sid=sid,
            carrier_status=status,
            answered_by=answered_by,
            reported_at=NOW,
        ),
    )


async def test_variables_are_kept_for_the_dial(pool: Pool, calls: Any) -> None:
    event = await calls.enqueued("org_a", variables={"first_name": "Ada"})
    dial = await claim(pool)
    assert dial is not None
    assert dial.call_id == event.call_id
    assert dial.variables == {"first_name": "Ada"}


async def test_a_number_listed_after_the_call_was_accepted_is_never_dialed(
    pool: Pool, calls: Any
) -> None:
    event = await calls.enqueued("org_a", NEW_YORK_NUMBER)
    other_org = await calls.enqueued("org_b", NEW_YORK_NUMBER)
    await org_a_sets(pool, DoNotCallAdded(number=NEW_YORK_NUMBER, requested_by="t"))
    assert await claimed_id(pool) == other_org.call_id  # the list is org_a's only
    assert await claim(pool) is None
    assert await calls.state(event.call_id) == "skipped"
    assert await calls.events(event.call_id) == [
        CallSkipped(call_id=event.call_id, reason="do_not_call")
    ]


async def test_a_number_taken_off_the_list_is_dialed_again_and_a_late_old_event_changes_nothing(
    pool: Pool, calls: Any
) -> None:
    added = await org_a_sets(pool, DoNotCallAdded(number=NEW_YORK_NUMBER, requested_by="t"))
    await org_a_sets(pool, DoNotCallRemoved(number=NEW_YORK_NUMBER, requested_by="t"))
    await Handlers(pool)(added)  # the add redelivered after the removal
    event = await calls.enqueued("org_a", NEW_YORK_NUMBER)
    assert await claimed_id(pool) == event.call_id


async def test_nothing_of_a_paused_batch_is_dialed_until_it_is_resumed(
    pool: Pool, calls: Any
) -> None:
    batch = f"batch-{uuid.uuid4().hex}"
    event = await calls.enqueued("org_a", batch_id=batch)
    single = await calls.enqueued("org_a")
    await deliver(pool, "org_a", batch, BatchPaused(batch_id=batch, requested_by="t"))
    assert await claimed_id(pool) == single.call_id  # other lanes go on
    assert await claim(pool) is None
    assert await calls.state(event.call_id) == "pending"

    await deliver(pool, "org_a", batch, BatchResumed(batch_id=batch, requested_by="t"))
    assert await claimed_id(pool) == event.call_id


async def test_a_batch_never_has_more_calls_in_flight_than_its_max_concurrency(
    pool: Pool, calls: Any
) -> None:
    batch = f"batch-{uuid.uuid4().hex}"
    requested = [
        await calls.enqueued("org_a", batch_id=batch, batch_index=i, max_concurrency=2)
        for i in range(3)
    ]
    first, second = await claim(pool), await claim(pool)
    assert first is not None
    assert second is not None
    assert await claim(pool) is None  # two in flight
    await report(pool, first.call_id, "ringing")
    assert await claim(pool) is None  # still in flight
    await report(pool, first.call_id, "completed")
    third = await claim(pool)  # its slot is free at once
    assert third is not None
    assert third.call_id == requested[2].call_id


async def test_an_organization_never_has_more_calls_in_flight_than_its_policy_allows(
    pool: Pool, calls: Any
) -> None:
    await org_a_sets(pool, CallingPolicySet(max_concurrency=1, requested_by="t"))
    await calls.enqueued("org_a")
    await calls.enqueued("org_a", batch_id=f"batch-{uuid.uuid4().hex}")
    other = await calls.enqueued("org_b")
    got = [await claim(pool) for _ in range(3)]
    claimed = [d.call_id for d in got if d is not None]
    assert len(claimed) == 2  # one of org_a's, and org_b's
    assert other.call_id in claimed


async def test_a_number_is_never_called_twice_at_once_by_one_organization(
    pool: Pool, calls: Any
) -> None:
    first = await calls.enqueued("org_a", NEW_YORK_NUMBER)
    batch = f"batch-{uuid.uuid4().hex}"
    second = await calls.enqueued("org_a", NEW_YORK_NUMBER, batch_id=batch, batch_index=0)
    behind = await calls.enqueued("org_a", batch_id=batch, batch_index=1)
    assert await claimed_id(pool) == first.call_id
    dial = await claim(pool)  # the second is passed over, keeping its place; its batch goes on
    assert dial is not None
    assert dial.call_id == behind.call_id
    assert await claim(pool) is None  # still in flight
    assert (await calls.dial(second.call_id))["state"] == "pending"
    await report(pool, first.call_id, "ringing")
    assert await claim(pool) is None  # ringing is in flight too
    await report(pool, first.call_id, "no-answer")
    dial = await claim(pool)  # dialed as soon as the number is free
    assert dial is not None
    assert dial.call_id == second.call_id


async def test_many_queued_calls_to_a_busy_number_do_not_hold_up_the_call_behind_them(
    pool: Pool, calls: Any
) -> None:
    # a client calling its own test phone in a loop: 600 calls to one number queued, the
    # first in flight; one claim passes over the other 599 (before: it put off 500 of them,
    # one transaction and one scan of the queue each, and gave up)
    first = await calls.enqueued("org_a", NEW_YORK_NUMBER)
    for _ in range(599):
        await calls.enqueued("org_a", NEW_YORK_NUMBER)
    other = await calls.enqueued("org_a")
    assert await claimed_id(pool) == first.call_id
    assert await claimed_id(pool) == other.call_id
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM dialer.dials WHERE state = 'pending' AND not_before > %s",
            (NOW,),
        )
        assert await cur.fetchone() == {"n": 0}  # none of them was put off


async def test_outside_its_window_a_call_waits_for_the_opening_then_is_dialed(
    pool: Pool, calls: Any
) -> None:
    window = CallingWindow(start="10:00", end="20:00")  # closed in Los Angeles at NOW
    event = await calls.enqueued("org_a", LOS_ANGELES_NUMBER, schedule=Schedule(window=window))
    opens = datetime(2027, 3, 1, 18, 0, tzinfo=UTC)
    assert await claim(pool) is None
    row = await calls.dial(event.call_id)
    assert (row["state"], row["not_before"]) == ("pending", opens)
    assert await calls.events(event.call_id) == [
        CallScheduled(call_id=event.call_id, not_before=opens, reason="window")
    ]
    assert await claim(pool, opens - timedelta(seconds=1)) is None
    assert await claimed_id(pool, opens) == event.call_id


async def test_two_recipients_hours_apart_are_each_dialed_inside_their_own_window(
    pool: Pool, calls: Any
) -> None:
    window = CallingWindow(start="09:00", end="09:30")
    tokyo = await calls.enqueued(
        "org_a",
        schedule=Schedule(window=window.model_copy(update={"time_zone": "Asia/Tokyo"})),
    )
    paris = await calls.enqueued(
        "org_a",
        schedule=Schedule(window=window.model_copy(update={"time_zone": "Europe/Paris"})),
    )
    dialed: dict[uuid.UUID, datetime] = {}
    at = datetime(2027, 3, 1, 0, 0, tzinfo=UTC)
    while at < datetime(2027, 3, 2, 0, 0, tzinfo=UTC) and len(dialed) < 2:
        dial = await claim(pool, at)
        if dial is not None:
            dialed[dial.call_id] = at
        at += timedelta(minutes=10)
    # 09:00 in Tokyo is 00:00 UTC; 09:00 in Paris is 08:00 UTC (8 hours apart)
    assert dialed == {
        tokyo.call_id: datetime(2027, 3, 1, 0, 0, tzinfo=UTC),
        paris.call_id: datetime(2027, 3, 1, 8, 0, tzinfo=UTC),
    }


async def test_a_call_not_placed_by_end_at_expires(pool: Pool, calls: Any) -> None:
    end_at = NOW + timedelta(minutes=1)
    window = CallingWindow(start="23:00", end="23:30", time_zone="UTC")
    event = await calls.enqueued("org_a", schedule=Schedule(end_at=end_at, window=window))
    assert await claim(pool) is None  # put off until end_at, the window opening after it
    assert (await calls.dial(event.call_id))["not_before"] == end_at
    assert await claim(pool, end_at) is None
    assert await calls.state(event.call_id) == "expired"
    assert (await calls.events(event.call_id))[-1] == CallExpired(
        call_id=event.call_id, end_at=end_at
    )


async def test_a_number_at_its_daily_cap_waits_a_day_from_its_first_call(
    pool: Pool, calls: Any
) -> None:
    await org_a_sets(pool, CallingPolicySet(daily_cap_per_number=1, requested_by="t"))
    first = await calls.enqueued("org_a", NEW_YORK_NUMBER)
    dial = await claim(pool, datetime.now(UTC))
    assert dial is not None
    await report(pool, first.call_id, "completed")
    second = await calls.enqueued("org_a", NEW_YORK_NUMBER)
    assert await claim(pool, datetime.now(UTC)) is None
    row = await calls.dial(second.call_id)
    started = (await calls.dial(first.call_id))["dial_started_at"]
    assert row["not_before"] == started + timedelta(hours=24)


async def test_a_busy_call_is_retried_as_a_new_linked_call_once_however_often_it_ends(
    pool: Pool, calls: Any
) -> None:
    policy = RetryPolicy(max_attempts=2, on=("busy",), delay_seconds=30)
    batch = f"batch-{uuid.uuid4().hex}"
    event = await calls.enqueued(
        "org_a", batch_id=batch, batch_index=0, retry=policy, variables={"a": "1"}
    )
    assert await claim(pool, datetime.now(UTC)) is not None
    before = datetime.now(UTC)
    await report(pool, event.call_id, "busy")
    await report(pool, event.call_id, "busy")  # the callback repeated

    retry_id = campaigns.retry_call_id(event.call_id)
    [scheduled] = await calls.events(event.call_id, CallRetryScheduled)
    assert (scheduled.retry_call_id, scheduled.attempt, scheduled.because) == (retry_id, 2, "busy")
    assert scheduled.not_before >= before + timedelta(seconds=30)
    async with pool.connection() as conn:
        stream = await eventstore.read_stream(conn, call_stream(retry_id))
    [requested] = [e.event() for e in stream]
    assert isinstance(requested, CallRequested)
    assert (requested.attempt, requested.previous_call_id, requested.first_call_id) == (
        2,
        event.call_id,
        event.call_id,
    )
    assert (requested.batch_id, requested.batch_index, requested.variables) == (
        batch,
        0,
        {"a": "1"},
    )
    row = await calls.dial(retry_id)
    assert row["state"] == "pending"
    assert await claim(pool, datetime.now(UTC)) is None  # not before the delay
    dial = await claim(pool, scheduled.not_before)
    assert dial is not None
    assert dial.call_id == retry_id

    await report(pool, retry_id, "busy")  # the second and last attempt
    assert await calls.events(retry_id, CallRetryScheduled) == []


async def test_a_call_answered_by_a_person_is_not_retried(pool: Pool, calls: Any) -> None:
    policy = RetryPolicy(max_attempts=3, on=("busy", "no_answer", "voicemail"))
    event = await calls.enqueued("org_a", retry=policy)
    assert await claim(pool) is not None
    await report(pool, event.call_id, "completed", answered_by="human")
    assert await calls.events(event.call_id, CallRetryScheduled) == []
    machine = await calls.enqueued("org_a", retry=policy)
    assert await claim(pool) is not None
    await report(pool, machine.call_id, "completed", answered_by="machine_start")
    assert len(await calls.events(machine.call_id, CallRetryScheduled)) == 1


async def test_a_batch_waiting_for_its_window_takes_turns_with_calls_that_can_ring(
    pool: Pool, calls: Any
) -> None:
    closed = Schedule(window=CallingWindow(start="23:00", end="23:30", time_zone="UTC"))
    batch = f"batch-{uuid.uuid4().hex}"
    for i in range(3):
        await calls.enqueued("org_a", batch_id=batch, batch_index=i, schedule=closed)
    ready = await calls.enqueued("org_b")
    assert await claimed_id(pool) == ready.call_id
    assert await claim(pool) is None  # org_a's three are put off until 23:00


class SettlingCarrier:
    """The carrier as the watchdog asks it: every call has ended `completed`."""

    async def fetch_call(self, call_sid: str) -> CarrierCall:
        return CarrierCall(sid=call_sid, status="completed", duration_seconds=1, end_time=NOW)


async def test_a_call_whose_end_was_never_reported_frees_its_slot_when_the_watchdog_settles_it(
    pool: Pool, calls: Any
) -> None:
    batch = f"batch-{uuid.uuid4().hex}"
    first = await calls.enqueued("org_a", batch_id=batch, batch_index=0, max_concurrency=1)
    second = await calls.enqueued("org_a", batch_id=batch, batch_index=1, max_concurrency=1)
    assert await claim(pool) is not None
    async with pool.connection() as conn:
        await attempts.mark_initiated(conn, first.call_id, "CA" + uuid.uuid4().hex, "dial")
    assert await claim(pool) is None  # its callbacks were lost: the slot is held
    watchdog = StaleCallWatchdog(pool, SettlingCarrier(), stale_after_seconds=0)  # type: ignore[arg-type]
    assert await watchdog.check_once() == 1
    assert await claimed_id(pool) == second.call_id
