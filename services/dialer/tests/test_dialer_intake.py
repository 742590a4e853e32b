"""The dialer's intake watchdogs, against the real event store: a request, a cancel or a
campaign rule whose message never reached the dialer's queues is taken in from the store once
it is older than the grace; one the consumer took in, or one still within the grace, is left
alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from calls_events import (
    BatchCancelRequested,
    BatchPaused,
    CallCanceled,
    CallingPolicySet,
    DoNotCallAdded,
    Envelope,
    Event,
    calling_policy_stream,
    do_not_call_stream,
)
from calls_platform import eventstore
from calls_platform.db import Pool
from calls_testing import unique_number
from dialer import campaign_store, dial_queue
from dialer.intake import control_watchdog, intake_watchdog
from prometheus_client import REGISTRY

pytestmark = pytest.mark.integration


def taken_in() -> float:
    return REGISTRY.get_sample_value("dials_taken_in_by_watchdog_total") or 0.0


async def readable(pool: Pool) -> None:
    """Wait until what was appended so far can be read: the watchdog reads below the oldest
    transaction still running in the cluster, which another test's may hold back."""
    async with pool.connection() as conn:
        assert await eventstore.wait_readable(conn)


async def checkpoint(pool: Pool, name: str = "call-requests") -> int | None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT position FROM dialer.intake_checkpoints WHERE name = %s", (name,)
        )
        row = await cur.fetchone()
    return None if row is None else int(row["position"])


async def test_a_request_that_never_arrived_is_taken_in_after_the_grace(
    pool: Pool, calls: Any
) -> None:
    lost, lost_request = await calls.requested("org_intake")  # its message never came
    arrived, arrived_request = await calls.requested("org_intake")
    async with pool.connection() as conn:
        assert await dial_queue.enqueue(conn, arrived, arrived_request)  # the consumer took it
    now = datetime.now(UTC)
    clock = {"now": now}
    watchdog = intake_watchdog(pool, grace_seconds=60, clock=lambda: clock["now"])
    before = taken_in()
    await readable(pool)  # so that the check within the grace does see both requests

    # within the grace: left for the queue, and the checkpoint waits before it
    assert not await watchdog.check()
    assert await checkpoint(pool) is None
    with pytest.raises(AssertionError):
        await calls.dial(lost_request.call_id)

    clock["now"] = now + timedelta(seconds=61)
    await watchdog.check()
    dial = await calls.dial(lost_request.call_id)
    assert (dial["state"], dial["requested_event_id"]) == ("pending", lost.event_id)
    assert dial["requested_position"] == lost.position
    assert taken_in() == before + 1  # the one that arrived is not counted
    assert await checkpoint(pool) == arrived.position

    # again: nothing new, nothing counted twice
    await watchdog.check()
    assert taken_in() == before + 1


async def test_a_request_of_a_canceled_batch_is_taken_in_canceled(pool: Pool, calls: Any) -> None:
    async with pool.connection() as conn:
        await dial_queue.cancel_batch(conn, "org_intake_b", "batch_gone")
    _, request = await calls.requested("org_intake_b", batch_id="batch_gone")
    watchdog = intake_watchdog(
        pool, grace_seconds=1, clock=lambda: datetime.now(UTC) + timedelta(seconds=5)
    )
    await readable(pool)  # what an open transaction elsewhere holds back
    await watchdog.check()
    assert (await calls.dial(request.call_id))["state"] == "canceled"


def control_taken_in() -> float:
    return REGISTRY.get_sample_value("dialer_control_events_taken_in_by_watchdog_total") or 0.0


async def test_control_events_that_never_arrived_are_applied_after_the_grace(
    pool: Pool, calls: Any
) -> None:
    org = "org_control"
    waiting = await calls.enqueued(org, batch_id="batch_cut")  # to be ended by the cancel
    listed = unique_number()

    async def appended(event: Event, stream_id: str) -> Envelope:
        """Appended as the gateway does; its message never reaches dialer.control."""
        async with pool.connection() as conn:
            [recorded] = await eventstore.append(
                conn, [Envelope.wrap(event, stream_id=stream_id, organization_id=org)]
            )
        return recorded

    await appended(DoNotCallAdded(number=listed, requested_by="key_1"), do_not_call_stream(org))
    await appended(BatchPaused(batch_id="batch_held", requested_by="key_1"), "batch_held")
    await appended(BatchCancelRequested(batch_id="batch_cut", requested_by="key_1"), "batch_cut")
    policy = await appended(
        CallingPolicySet(max_concurrency=3, requested_by="key_1"), calling_policy_stream(org)
    )
    async with pool.connection() as conn:  # this one the consumer had
        assert (await campaign_store.apply_campaign_event(conn, policy, policy.event())).applied
    await readable(pool)
    now = datetime.now(UTC)
    clock = {"now": now}
    watchdog = control_watchdog(pool, grace_seconds=60, clock=lambda: clock["now"])
    before = control_taken_in()

    async def held() -> dict[str, Any]:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT"
                " (SELECT listed FROM dialer.do_not_call WHERE number = %s) AS listed,"
                " (SELECT paused FROM dialer.batch_pauses WHERE batch_id = 'batch_held') AS paused,"
                " EXISTS (SELECT 1 FROM dialer.canceled_batches WHERE batch_id = 'batch_cut')"
                " AS canceled,"
                " (SELECT max_concurrency FROM dialer.calling_policies"
                "  WHERE organization_id = %s) AS max_concurrency",
                (listed, org),
            )
            row = await cur.fetchone()
        assert row is not None
        return row

    await watchdog.check()  # within the grace: left for the queue
    assert await held() == {
        "listed": None,
        "paused": None,
        "canceled": False,
        "max_concurrency": 3,
    }
    assert await calls.state(waiting.call_id) == "pending"

    clock["now"] = now + timedelta(seconds=61)
    await watchdog.check()
    assert await held() == {
        "listed": True,
        "paused": True,
        "canceled": True,
        "max_concurrency": 3,
    }
    assert await calls.state(waiting.call_id) == "canceled"
    assert [type(e) for e in await calls.events(waiting.call_id)] == [CallCanceled]
    assert control_taken_in() == before + 3  # the policy the consumer had is not counted

    await watchdog.check()  # again: nothing new, nothing applied twice
    assert control_taken_in() == before + 3
    assert [type(e) for e in await calls.events(waiting.call_id)] == [CallCanceled]


async def test_the_control_tail_moves_past_the_events_it_does_not_read(
    pool: Pool, calls: Any
) -> None:
    """Control events are rare: a checkpoint that stopped at the last of them would have every
    pass scan the whole store since (the read is by type). Once what was readable at a pass is
    older than the grace, the checkpoint moves past it; nothing after it is skipped."""
    org = "org_tail"

    async def listed(number: str) -> Envelope:
        event = DoNotCallAdded(number=number, requested_by="key_1")
        async with pool.connection() as conn:
            [recorded] = await eventstore.append(
                conn, [Envelope.wrap(event, stream_id=do_not_call_stream(org), organization_id=org)]
            )
        return recorded

    first = await listed(unique_number())
    async with pool.connection() as conn:  # the consumer had it
        assert (await campaign_store.apply_campaign_event(conn, first, first.event())).applied
    requests = [(await calls.requested(org))[0] for _ in range(5)]  # no concern of this tail
    await readable(pool)
    now = datetime.now(UTC)
    clock = {"now": now}
    watchdog = control_watchdog(pool, grace_seconds=60, clock=lambda: clock["now"])

    await watchdog.check()
    assert await checkpoint(pool, "control-events") is None  # nothing due yet

    clock["now"] = now + timedelta(seconds=61)
    await watchdog.check()
    # past the requests: all readable at the first pass, which is older than the grace now
    assert await checkpoint(pool, "control-events") == requests[-1].position

    before = control_taken_in()
    lost = await listed(unique_number())  # its message never came
    await readable(pool)
    clock["now"] = now + timedelta(seconds=122)
    await watchdog.check()
    assert control_taken_in() == before + 1  # not skipped
    assert await checkpoint(pool, "control-events") == lost.position
