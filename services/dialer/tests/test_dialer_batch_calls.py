"""A batch's calls travel in its one BatchRequested: the dialer takes them in as dials, in the
batch's order, and opens each call's stream (appends its CallRequested) the first time it
handles the call, whichever way that is: claimed for dialing, put off, skipped, expired or
canceled. Against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from calls_events import (
    BatchCancelRequested,
    CallCanceled,
    CallExpired,
    CallingWindow,
    CallRequested,
    CallScheduled,
    CallSkipped,
    DoNotCallAdded,
    Envelope,
    Event,
    Schedule,
    call_stream,
    do_not_call_stream,
    requested_call_envelopes,
)
from calls_platform import eventstore
from calls_platform.db import Pool
from dialer import attempts, campaign_store, claims, dial_queue, dials
from dialer.consumer import Handlers
from dialer.intake import intake_watchdog

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Calls

pytestmark = pytest.mark.integration

# a Monday, 17:00 UTC: 12:00 in New York (in the future: calls are enqueued due now)
NOW = datetime(2027, 3, 1, 17, 0, tzinfo=UTC)
NEW_YORK_NUMBER = "+12125550142"


async def claim(pool: Pool, now: datetime = NOW) -> dials.Dial | None:
    async with pool.connection() as conn:
        return await claims.claim_next(conn, now)


async def stream(pool: Pool, call_id: uuid.UUID) -> list[Envelope]:
    async with pool.connection() as conn:
        return await eventstore.read_stream(conn, call_stream(call_id))


async def events(pool: Pool, call_id: uuid.UUID) -> list[Event]:
    return [e.event() for e in await stream(pool, call_id)]


def opening(batch: Envelope, request: CallRequested) -> Envelope:
    """The envelope that opens `request`'s stream (before the dialer gives it its time)."""
    [envelope] = [
        e
        for e in requested_call_envelopes(batch, batch.event())  # type: ignore[arg-type]
        if e.data["call_id"] == str(request.call_id)
    ]
    return envelope


async def deliver(pool: Pool, org: str, stream_id: str, event: Event) -> None:
    """Append an event as the gateway would and hand it to the dialer's consumer."""
    async with pool.connection() as conn:
        [recorded] = await eventstore.append(
            conn, [Envelope.wrap(event, stream_id=stream_id, organization_id=org)]
        )
    await Handlers(pool)(recorded)


async def test_a_batch_is_taken_in_from_its_request_once_in_its_order(
    pool: Pool, calls: Calls
) -> None:
    batch, requests = await calls.batch_requested("org_a", 5)
    handle = Handlers(pool)
    await handle(batch)
    await handle(batch)  # redelivered
    async with pool.connection() as conn:
        assert await dial_queue.pending_count(conn) == 5
    for request in requests:
        dial = await calls.dial(request.call_id)
        assert dial["requested_position"] == batch.position
        assert dial["requested_event_id"] == opening(batch, request).event_id
        assert dial["unopened"] is not None
        assert await stream(pool, request.call_id) == []  # nothing on its stream yet
    claimed = [await claim(pool) for _ in range(5)]
    assert [d.call_id for d in claimed if d] == [r.call_id for r in requests]


async def test_a_claim_opens_the_calls_stream_before_the_carrier_is_asked(
    pool: Pool, calls: Calls
) -> None:
    batch, [request] = await calls.batch_requested("org_a", 1, max_concurrency=3)
    await Handlers(pool)(batch)
    dial = await claim(pool)
    assert dial is not None
    assert dial.call_id == request.call_id
    # committed with `dialing`: a callback the carrier sends at once finds the call
    [opened] = await stream(pool, request.call_id)
    assert opened == opening(batch, request).model_copy(
        update={
            "position": opened.position,
            "stream_version": 1,
            "occurred_at": opened.occurred_at,
        }
    )
    # it happened when it was appended, not when the batch was accepted (the lag metrics and
    # alerts read it)
    assert opened.occurred_at > batch.occurred_at
    assert opened.event() == request
    assert opened.causation_id == str(batch.event_id)
    assert opened.correlation_id == batch.correlation_id
    assert (await calls.dial(request.call_id))["unopened"] is None

    # put back (never sent) and claimed again: its request is not appended twice
    async with pool.connection() as conn:
        await attempts.retry_later(conn, request.call_id, 0)
    assert await claim(pool, NOW + timedelta(seconds=1)) is not None
    async with pool.connection() as conn:
        assert await attempts.mark_initiated(conn, request.call_id, "CA" + "b" * 32, "dial")
    assert [type(e).__name__ for e in await events(pool, request.call_id)] == [
        "CallRequested",
        "CallInitiated",
    ]


async def test_the_dialers_own_request_coming_back_changes_nothing(
    pool: Pool, calls: Calls
) -> None:
    """The dialer's queue takes CallRequested: the one it appended comes back to it."""
    batch, [request] = await calls.batch_requested("org_a", 1)
    await Handlers(pool)(batch)
    assert await claim(pool) is not None
    [opened] = await stream(pool, request.call_id)
    await Handlers(pool).handle_many([opened, batch])
    dial = await calls.dial(request.call_id)
    assert (dial["state"], dial["attempts"], dial["unopened"]) == ("dialing", 1, None)
    assert len(await stream(pool, request.call_id)) == 1


async def test_a_canceled_batchs_pending_calls_are_opened_then_canceled(
    pool: Pool, calls: Calls
) -> None:
    batch, requests = await calls.batch_requested("org_a", 3)
    await Handlers(pool)(batch)
    dialing = await claim(pool)
    assert dialing is not None
    assert dialing.call_id == requests[0].call_id
    cancel = BatchCancelRequested(batch_id=requests[0].batch_id or "", requested_by="t")
    await deliver(pool, "org_a", cancel.batch_id, cancel)
    for request in requests[1:]:
        assert await calls.state(request.call_id) == "canceled"
        assert await events(pool, request.call_id) == [
            request,
            CallCanceled(call_id=request.call_id, reason="batch canceled"),
        ]
    assert await events(pool, requests[0].call_id) == [requests[0]]


async def test_calls_of_a_batch_canceled_before_its_request_arrived_are_opened_then_canceled(
    pool: Pool, calls: Calls
) -> None:
    batch, requests = await calls.batch_requested("org_a", 2)
    cancel = BatchCancelRequested(batch_id=requests[0].batch_id or "", requested_by="t")
    await deliver(pool, "org_a", cancel.batch_id, cancel)  # the control queue was faster
    await Handlers(pool)(batch)
    for request in requests:
        assert await events(pool, request.call_id) == [
            request,
            CallCanceled(call_id=request.call_id, reason="batch canceled"),
        ]
    assert await claim(pool) is None


async def test_a_call_canceled_at_its_claim_is_opened_then_canceled(
    pool: Pool, calls: Calls
) -> None:
    batch, [request] = await calls.batch_requested("org_a", 1)
    await Handlers(pool)(batch)
    async with pool.connection() as conn:
        # a cancel that committed while the batch's enqueue was still in flight
        await conn.execute(
            "INSERT INTO dialer.canceled_batches (batch_id, organization_id) VALUES (%s, %s)",
            (request.batch_id, "org_a"),
        )
    assert await claim(pool) is None
    assert await events(pool, request.call_id) == [
        request,
        CallCanceled(call_id=request.call_id, reason="batch canceled"),
    ]


async def test_campaign_rules_open_the_stream_before_their_event(pool: Pool, calls: Calls) -> None:
    """Put off (outside its window), skipped (do-not-call), expired (past end_at): each
    appends its event after the call's request, and the request once."""
    closed = Schedule(window=CallingWindow(start="20:00", end="21:00", time_zone="UTC"))
    _, [later] = await calls.batch_requested("org_a", 1, schedule=closed)
    end_at = NOW - timedelta(minutes=1)
    _, [late] = await calls.batch_requested("org_a", 1, schedule=Schedule(end_at=end_at))
    _, [listed] = await calls.batch_requested("org_a", [NEW_YORK_NUMBER])
    await deliver(
        pool,
        "org_a",
        do_not_call_stream("org_a"),
        DoNotCallAdded(number=NEW_YORK_NUMBER, requested_by="t"),
    )
    for envelope in await _batches(pool):
        await Handlers(pool)(envelope)

    assert await claim(pool) is None  # each held back by its rules
    put_off = await events(pool, later.call_id)
    assert put_off[0] == later
    assert isinstance(put_off[1], CallScheduled)
    assert len(put_off) == 2
    assert await events(pool, late.call_id) == [
        late,
        CallExpired(call_id=late.call_id, end_at=end_at),
    ]
    assert await events(pool, listed.call_id) == [
        listed,
        CallSkipped(call_id=listed.call_id, reason="do_not_call"),
    ]
    # the window opens: dialed, its request not appended again
    dial = await claim(pool, NOW.replace(hour=20, minute=30))
    assert dial is not None
    assert dial.call_id == later.call_id
    assert len(await stream(pool, later.call_id)) == 2


async def _batches(pool: Pool) -> list[Envelope]:
    async with pool.connection() as conn:
        stored = await eventstore.read_all(conn, after=eventstore.START, limit=1000)
    return [e for e in stored if e.event_type == "BatchRequested"]


async def test_a_batch_whose_message_never_came_is_taken_in_from_the_store(
    pool: Pool, calls: Calls
) -> None:
    batch, requests = await calls.batch_requested("org_a", 3)
    arrived, arrived_request = await calls.requested("org_a")
    async with pool.connection() as conn:
        assert await dial_queue.enqueue(conn, arrived, arrived_request)
        assert await eventstore.wait_readable(conn)
    watchdog = intake_watchdog(
        pool, grace_seconds=1, clock=lambda: datetime.now(UTC) + timedelta(seconds=5)
    )
    await watchdog.check()
    await watchdog.check()  # again: nothing twice
    for request in requests:
        dial = await calls.dial(request.call_id)
        assert (dial["state"], dial["requested_position"]) == ("pending", batch.position)
        assert dial["requested_event_id"] == opening(batch, request).event_id
    claimed = [d.call_id for _ in range(4) if (d := await claim(pool))]
    batch_ids = [r.call_id for r in requests]
    assert sorted(claimed) == sorted([*batch_ids, arrived_request.call_id])
    assert [c for c in claimed if c in batch_ids] == batch_ids  # in the batch's order
    assert [type(e) for e in await events(pool, requests[0].call_id)] == [CallRequested]


async def test_a_hold_on_a_call_its_batch_cancel_ended_meanwhile_records_nothing(
    pool: Pool, calls: Calls
) -> None:
    """The claim read the head, then a consumer (another replica) canceled the batch: the
    hold that would put the call off finds it no longer pending and appends nothing after its
    CallCanceled."""
    closed = Schedule(window=CallingWindow(start="20:00", end="21:00", time_zone="UTC"))
    batch, [request] = await calls.batch_requested("org_a", 1, schedule=closed)
    await Handlers(pool)(batch)
    async with pool.connection() as conn, conn.transaction():
        head = await claims.next_head(conn, NOW)
        assert head is not None
        assert head["call_id"] == request.call_id
        async with pool.connection() as other:
            await dial_queue.cancel_batch(other, "org_a", request.batch_id or "")
        assert await campaign_store.hold(conn, head, NOW)  # claim another
    assert await events(pool, request.call_id) == [
        request,
        CallCanceled(call_id=request.call_id, reason="batch canceled"),
    ]


async def test_a_cancel_during_the_intake_of_its_batch_cancels_every_call(
    pool: Pool, calls: Calls
) -> None:
    """The batch's calls are being inserted (a consumer) when its cancel arrives (another
    consumer, from the control queue): the cancel waits for the intake, and ends every call.
    Before, it saw none of the uncommitted rows and they stayed pending."""
    batch, requests = await calls.batch_requested("org_a", 50)
    async with pool.connection() as intake, intake.transaction():
        assert await dial_queue.enqueue_batch(intake, batch, batch.event()) == 50  # type: ignore[arg-type]

        async def cancel() -> int:
            async with pool.connection() as conn:
                return await dial_queue.cancel_batch(conn, "org_a", requests[0].batch_id or "")

        canceling = asyncio.create_task(cancel())
        await asyncio.sleep(0.3)
        assert not canceling.done()  # waits for the intake's commit
    assert await canceling == 50
    async with pool.connection() as conn:
        assert await dial_queue.pending_count(conn) == 0
    assert [await calls.state(r.call_id) for r in requests] == ["canceled"] * 50


async def test_a_claim_that_finds_its_batch_canceled_takes_the_next_head_at_once(
    pool: Pool, calls: Calls
) -> None:
    _, canceled = await calls.batch_requested("org_a", 3)
    for envelope in await _batches(pool):
        await Handlers(pool)(envelope)
    single = await calls.enqueued("org_b")
    async with pool.connection() as conn:
        # a cancel that committed while the batch's intake was in flight, as before the lock
        await conn.execute(
            "INSERT INTO dialer.canceled_batches (batch_id, organization_id) VALUES (%s, %s)",
            (canceled[0].batch_id, "org_a"),
        )
    dial = await claim(pool)
    assert dial is not None
    assert dial.call_id == single.call_id
