"""The dials table against the real PostgreSQL: every state change, and the one event it
appends in the same commit."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from calls_events import (
    BatchCancelRequested,
    CallCanceled,
    CallFailed,
    CallInitiated,
    CallStatusReported,
    Envelope,
    call_stream,
)
from calls_platform import eventstore
from calls_platform.db import Pool
from dialer import attempts, claims, dial_queue, dials
from dialer.consumer import Handlers

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Calls

pytestmark = pytest.mark.integration

SID = "CA" + "a" * 32


async def claim(pool: Pool) -> dials.Dial | None:
    async with pool.connection() as conn:
        return await claims.claim_next(conn)


async def test_enqueue_is_idempotent(pool: Pool, calls: Calls) -> None:
    envelope, event = await calls.requested("org_a")
    async with pool.connection() as conn:
        assert await dial_queue.enqueue(conn, envelope, event) is True
        assert await dial_queue.enqueue(conn, envelope, event) is False
        cur = await conn.execute(
            "SELECT count(*) AS n FROM dialer.dials WHERE call_id = %s", (event.call_id,)
        )
        assert (await cur.fetchone())["n"] == 1  # type: ignore[index]
        assert await dial_queue.pending_count(conn) == 1
    row = await calls.dial(event.call_id)
    assert row["state"] == "pending"
    assert row["requested_position"] == envelope.position
    assert row["requested_event_id"] == envelope.event_id
    assert await calls.events(event.call_id) == []


async def test_enqueue_through_the_consumer_is_idempotent(pool: Pool, calls: Calls) -> None:
    envelope, event = await calls.requested("org_a")
    handle = Handlers(pool)
    await handle(envelope)
    await handle(envelope)  # redelivered
    async with pool.connection() as conn:
        assert await dial_queue.pending_count(conn) == 1
    assert await calls.state(event.call_id) == "pending"


async def test_claim_next_marks_the_dial_dialing_and_counts_the_attempt(
    pool: Pool, calls: Calls
) -> None:
    event = await calls.enqueued("org_a")
    dial = await claim(pool)
    assert dial is not None
    assert dial.call_id == event.call_id
    assert (dial.to_number, dial.from_number, dial.attempts) == (
        event.to_number,
        event.from_number,
        1,
    )
    assert dial.dial_started_at is not None
    assert await calls.state(event.call_id) == "dialing"
    assert await claim(pool) is None


async def test_claim_next_alternates_organizations_and_does_not_queue_a_single_call_behind_a_batch(
    pool: Pool, calls: Calls
) -> None:
    batch_a = [await calls.enqueued("org_a", batch_id="batch-a") for _ in range(50)]
    single_a = await calls.enqueued("org_a")
    batch_b = [await calls.enqueued("org_b", batch_id="batch-b") for _ in range(10)]

    claimed = [await claim(pool) for _ in range(8)]
    assert all(d is not None for d in claimed)
    orgs = [d.organization_id for d in claimed]  # type: ignore[union-attr]
    ids = [d.call_id for d in claimed]  # type: ignore[union-attr]

    assert orgs == ["org_a", "org_b"] * 4
    assert single_a.call_id in ids[:3]
    # within each lane, calls go in the order they were requested
    assert [i for i in ids if i in {c.call_id for c in batch_b}] == [c.call_id for c in batch_b[:4]]
    assert [i for i in ids if i in {c.call_id for c in batch_a}] == [c.call_id for c in batch_a[:3]]


async def test_claim_next_skips_dials_put_back_for_later(pool: Pool, calls: Calls) -> None:
    later = await calls.enqueued("org_a")
    dial = await claim(pool)
    assert dial is not None
    async with pool.connection() as conn:
        await attempts.retry_later(conn, dial.call_id, 60)
    assert await calls.state(later.call_id) == "pending"
    assert await claim(pool) is None

    now = await calls.enqueued("org_a")
    second = await claim(pool)
    assert second is not None
    assert second.call_id == now.call_id


async def test_cancel_batch_cancels_pending_dials_with_one_call_canceled_each(
    pool: Pool, calls: Calls
) -> None:
    batch = [await calls.enqueued("org_a", batch_id="batch-c") for _ in range(3)]
    other_org = await calls.enqueued("org_b", batch_id="batch-c-b")
    dialing = await claim(pool)
    assert dialing is not None
    assert dialing.call_id == batch[0].call_id

    async with pool.connection() as conn:
        assert await dial_queue.cancel_batch(conn, "org_a", "batch-c") == 2
        assert await dial_queue.cancel_batch(conn, "org_a", "batch-c") == 0

    assert await calls.state(batch[0].call_id) == "dialing"  # already with the carrier
    assert await calls.events(batch[0].call_id) == []
    for call in batch[1:]:
        assert await calls.state(call.call_id) == "canceled"
        assert await calls.events(call.call_id) == [
            CallCanceled(call_id=call.call_id, reason="batch canceled")
        ]
    assert await calls.state(other_org.call_id) == "pending"


async def test_call_canceled_carries_the_request_metadata(pool: Pool, calls: Calls) -> None:
    envelope, event = await calls.requested("org_a", batch_id="batch-m")
    async with pool.connection() as conn:
        await dial_queue.enqueue(conn, envelope, event)
        await dial_queue.cancel_batch(conn, "org_a", "batch-m")
        [_, canceled] = await eventstore.read_stream(conn, call_stream(event.call_id))
    assert canceled.organization_id == "org_a"
    assert canceled.correlation_id == envelope.correlation_id
    assert canceled.causation_id == str(envelope.event_id)


async def test_a_call_of_an_already_canceled_batch_is_recorded_canceled(
    pool: Pool, calls: Calls
) -> None:
    async with pool.connection() as conn:
        assert await dial_queue.cancel_batch(conn, "org_a", "batch-d") == 0
    envelope, event = await calls.requested("org_a", batch_id="batch-d")
    async with pool.connection() as conn:
        assert await dial_queue.enqueue(conn, envelope, event) is True
        assert await dial_queue.enqueue(conn, envelope, event) is False
    assert await calls.state(event.call_id) == "canceled"
    assert await calls.events(event.call_id) == [
        CallCanceled(call_id=event.call_id, reason="batch canceled")
    ]
    assert await claim(pool) is None


async def test_cancel_through_the_consumer_before_and_after_the_calls_arrive(
    pool: Pool, calls: Calls
) -> None:
    handle = Handlers(pool)
    early, early_event = await calls.requested("org_a", batch_id="batch-e")
    await handle(early)
    cancel = Envelope.wrap(
        BatchCancelRequested(batch_id="batch-e", requested_by="test"),
        stream_id="batch-e",
        organization_id="org_a",
    )
    await handle(cancel)
    await handle(cancel)  # redelivered
    late, late_event = await calls.requested("org_a", batch_id="batch-e")
    await handle(late)

    for call_id in (early_event.call_id, late_event.call_id):
        assert await calls.state(call_id) == "canceled"
        assert len(await calls.events(call_id, CallCanceled)) == 1


async def test_claim_next_cancels_a_dial_whose_batch_was_canceled_after_it_was_enqueued(
    pool: Pool, calls: Calls
) -> None:
    event = await calls.enqueued("org_a", batch_id="batch-f")
    async with pool.connection() as conn:
        # a cancel that committed while this call's enqueue was still in flight
        await conn.execute(
            "INSERT INTO dialer.canceled_batches (batch_id, organization_id) VALUES (%s, %s)",
            ("batch-f", "org_a"),
        )
    assert await claim(pool) is None
    assert await calls.state(event.call_id) == "canceled"
    assert await calls.events(event.call_id) == [
        CallCanceled(call_id=event.call_id, reason="batch canceled")
    ]


async def test_mark_initiated_appends_one_call_initiated_however_often_it_runs(
    pool: Pool, calls: Calls
) -> None:
    event = await calls.enqueued("org_a")
    await claim(pool)
    async with pool.connection() as conn:
        assert await attempts.mark_initiated(conn, event.call_id, SID, "dial") is True
        assert await attempts.mark_initiated(conn, event.call_id, SID, "dial") is False
    row = await calls.dial(event.call_id)
    assert (row["state"], row["call_sid"]) == ("initiated", SID)
    assert row["finished_at"] is not None
    assert await calls.events(event.call_id) == [
        CallInitiated(call_id=event.call_id, call_sid=SID, source="dial")
    ]


def status_reported(org: str, call_id: uuid.UUID, sid: str) -> Envelope:
    return Envelope.wrap(
        CallStatusReported(
            call_id=call_id,
            call_sid=sid,
            carrier_status="initiated",
            sequence_number=0,
            reported_at=datetime.now(UTC),
        ),
        stream_id=call_stream(call_id),
        organization_id=org,
    )


async def test_mark_initiated_from_the_dial_and_a_callback_appends_one_call_initiated(
    pool: Pool, calls: Calls
) -> None:
    handle = Handlers(pool)
    callback_first = await calls.enqueued("org_a")
    dial_first = await calls.enqueued("org_a")
    await claim(pool)
    await claim(pool)
    sid_1, sid_2 = "CA" + "1" * 32, "CA" + "2" * 32

    # the callback can beat the create response
    await handle(status_reported("org_a", callback_first.call_id, sid_1))
    async with pool.connection() as conn:
        assert await attempts.mark_initiated(conn, callback_first.call_id, sid_1, "dial") is False
        assert await attempts.mark_initiated(conn, dial_first.call_id, sid_2, "dial") is True
    await handle(status_reported("org_a", dial_first.call_id, sid_2))

    assert await calls.events(callback_first.call_id, CallInitiated) == [
        CallInitiated(call_id=callback_first.call_id, call_sid=sid_1, source="callback")
    ]
    assert await calls.events(dial_first.call_id, CallInitiated) == [
        CallInitiated(call_id=dial_first.call_id, call_sid=sid_2, source="dial")
    ]


async def test_concurrent_dial_result_and_callback_append_one_call_initiated(
    pool: Pool, calls: Calls
) -> None:
    events = [await calls.enqueued("org_a") for _ in range(5)]
    for _ in events:
        await claim(pool)
    handle = Handlers(pool)

    async def from_dial(call_id: uuid.UUID, sid: str) -> None:
        async with pool.connection() as conn:
            await attempts.mark_initiated(conn, call_id, sid, "dial")

    sids = {e.call_id: "CA" + uuid.uuid4().hex for e in events}
    await asyncio.gather(
        *(from_dial(e.call_id, sids[e.call_id]) for e in events),
        *(handle(status_reported("org_a", e.call_id, sids[e.call_id])) for e in events),
    )
    for e in events:
        [initiated] = await calls.events(e.call_id)
        assert isinstance(initiated, CallInitiated)
        assert initiated.call_sid == sids[e.call_id]


async def test_a_callback_for_a_pending_or_finished_dial_changes_nothing(
    pool: Pool, calls: Calls
) -> None:
    handle = Handlers(pool)
    pending = await calls.enqueued("org_a")
    await handle(status_reported("org_a", pending.call_id, SID))
    assert await calls.state(pending.call_id) == "pending"
    assert await calls.events(pending.call_id) == []


async def test_mark_failed_records_the_carrier_code_and_message(pool: Pool, calls: Calls) -> None:
    event = await calls.enqueued("org_a")
    await claim(pool)
    message = "The 'To' number +15005550001 is not a valid phone number."
    async with pool.connection() as conn:
        assert await attempts.mark_failed(
            conn, event.call_id, code=21211, message=message, http_status=400
        )
        assert not await attempts.mark_failed(
            conn, event.call_id, code=21211, message=message, http_status=400
        )
        # a late SID does not resurrect a failed dial
        assert not await attempts.mark_initiated(conn, event.call_id, SID, "callback")
    row = await calls.dial(event.call_id)
    assert (row["state"], row["error_code"], row["error_message"]) == ("failed", 21211, message)
    assert await calls.events(event.call_id) == [
        CallFailed(call_id=event.call_id, error_code=21211, error_message=message, http_status=400)
    ]


async def test_redial_puts_an_ambiguous_dial_back_once(pool: Pool, calls: Calls) -> None:
    event = await calls.enqueued("org_a")
    await claim(pool)
    async with pool.connection() as conn:
        assert [d.call_id for d in await attempts.dialing(conn)] == [event.call_id]
        assert await attempts.redial(conn, event.call_id) is True
        assert await attempts.dialing(conn) == []
    again = await claim(pool)
    assert again is not None
    assert (again.call_id, again.attempts, again.redialed) == (event.call_id, 2, True)
    async with pool.connection() as conn:
        assert await attempts.redial(conn, event.call_id) is False
    assert await calls.state(event.call_id) == "dialing"


async def test_known_sids_names_only_sids_recorded_on_dials(pool: Pool, calls: Calls) -> None:
    event = await calls.enqueued("org_a")
    await claim(pool)
    async with pool.connection() as conn:
        await attempts.mark_initiated(conn, event.call_id, SID, "dial")
        assert await attempts.known_sids(conn, [SID, "CA" + "f" * 32]) == {SID}


async def test_enqueue_many_records_a_bulk_once_and_cancels_calls_of_canceled_batches(
    pool: Pool, calls: Calls
) -> None:
    async with pool.connection() as conn:
        await dial_queue.cancel_batch(conn, "org_a", "batch-gone")
    live = [await calls.requested("org_a", batch_id="batch-live") for _ in range(300)]
    gone = [await calls.requested("org_a", batch_id="batch-gone") for _ in range(5)]
    async with pool.connection() as conn:
        assert await dial_queue.enqueue_many(conn, live + gone) == 305
        assert await dial_queue.enqueue_many(conn, live[:10] + gone[:2]) == 0  # redelivered
        assert await dial_queue.pending_count(conn) == 300
    assert {await calls.state(e.call_id) for _, e in gone} == {"canceled"}
    for _, event in gone:
        assert await calls.events(event.call_id) == [
            CallCanceled(call_id=event.call_id, reason="batch canceled")
        ]
    assert await calls.events(live[0][1].call_id) == []


async def test_consumer_takes_a_mixed_delivery_in_one_call(pool: Pool, calls: Calls) -> None:
    requests = [await calls.requested("org_b") for _ in range(20)]
    await Handlers(pool).handle_many([envelope for envelope, _ in requests] * 2)
    async with pool.connection() as conn:
        assert await dial_queue.pending_count(conn) == 20
