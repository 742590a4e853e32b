"""Replays against the real PostgreSQL: a replay cut short (its replica stopped after a page)
is taken up by another once its lease runs out and goes on past the page it saved, so each
message is queued again once; one leased by a running replica is left to it, and the replica
that lost its lease saves nothing more; what happened after a replay was asked for is not
part of it; one waiting for its end to be readable writes nothing but its lease."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from calls_events import (
    BatchRequested,
    CallCanceled,
    CallInitiated,
    CallRequested,
    Envelope,
    Event,
    call_stream,
)
from calls_platform import eventstore
from calls_platform.db import Pool, open_pool
from calls_testing.clocks import ManualClock
from webhooks import store
from webhooks.__main__ import migrate
from webhooks.config import DEV_ENCRYPTION_KEY
from webhooks.domain import message_id
from webhooks.replays import Replayer
from webhooks.retention import Retention
from webhooks.signing import SecretBox, new_secret

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def url(database_factory: Any) -> str:
    """A database of this module's own: replays are taken by whichever replayer asks first."""
    url: str = database_factory("webhooks_replays")
    return url


@pytest.fixture(scope="module")
async def pool(url: str) -> AsyncIterator[Pool]:
    await migrate(url)
    pool = await open_pool(url, name="webhooks-replays-test", max_size=5)
    await pool.wait()
    yield pool
    await pool.close()


async def placed_call(pool: Pool, org: str) -> None:
    """A call requested and placed, in two commits (two messages: queued, initiated)."""
    call_id = uuid.uuid4()
    events: list[Event] = [
        CallRequested(
            call_id=call_id, to_number="+14155550100", from_number="+14155550199", requested_by="t"
        ),
        CallInitiated(call_id=call_id, call_sid="CA" + uuid.uuid4().hex),
    ]
    for event in events:
        async with pool.connection() as conn:
            await eventstore.append(
                conn, [Envelope.wrap(event, stream_id=call_stream(call_id), organization_id=org)]
            )


async def deliveries(pool: Pool, endpoint_id: uuid.UUID) -> dict[str, str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT message_id, state FROM webhooks.deliveries WHERE endpoint_id = %s",
            (endpoint_id,),
        )
        return {row["message_id"]: row["state"] for row in await cur.fetchall()}


async def new_endpoint(
    pool: Pool, org: str, now: datetime, events: tuple[str, ...] = ("call.queued", "call.initiated")
) -> uuid.UUID:
    async with pool.connection() as conn:
        endpoint = await store.create_endpoint(
            conn,
            organization_id=org,
            url="https://example.com/hook",
            events=list(events),
            description=None,
            secret_sealed=SecretBox(DEV_ENCRYPTION_KEY).seal(new_secret()),
            now=now,
        )
    endpoint_id: uuid.UUID = endpoint["id"]
    return endpoint_id


async def asked_for(
    pool: Pool, endpoint_id: uuid.UUID, org: str, now: datetime, *, readable: bool = True
) -> store.ReplayRow:
    """A replay of the last hour, asked for now (as the API records it, once what is stored is
    readable; `readable=False`: at once, its end perhaps not readable yet)."""
    async with pool.connection() as conn:
        if readable:
            assert await eventstore.wait_readable(conn)
        return await store.create_replay(
            conn,
            endpoint_id,
            org,
            now - timedelta(hours=1),
            until=await eventstore.head(conn),
            now=now,
        )


async def test_a_replay_cut_short_goes_on_past_its_last_page_once_its_lease_runs_out(
    pool: Pool,
) -> None:
    org = f"org_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    endpoint = {"id": await new_endpoint(pool, org, now)}
    for _ in range(3):
        await placed_call(pool, org)  # six events, one message each
    replay = await asked_for(pool, endpoint["id"], org, now)
    await placed_call(pool, org)  # after the replay was asked for: not part of it

    clock = ManualClock(now)
    first = Replayer(pool, clock, page=2, lease_seconds=60)
    assert await first.run_next(pages=1)  # one page, then its replica stops
    page_one = await deliveries(pool, endpoint["id"])
    assert len(page_one) == 2
    async with pool.connection() as conn:
        # the sender delivers them: queued again by the replay, they would be pending again
        await conn.execute(
            "UPDATE webhooks.deliveries SET state = 'delivered', completed_at = now()"
            " WHERE endpoint_id = %s",
            (endpoint["id"],),
        )
        running = await store.get_replay(conn, endpoint["id"], replay.id)
    assert running is not None
    assert (running.state, running.queued) == ("running", 2)

    second = Replayer(pool, clock, page=2, lease_seconds=60)
    assert not await second.run_next()  # the first one's lease holds

    clock.now = now + timedelta(seconds=61)
    stalled = uuid.uuid4()  # a replica that leases it next and then stalls past its lease
    async with pool.connection() as conn:
        assert await store.lease_replay(conn, stalled, now=clock.now, seconds=60)
    clock.now = now + timedelta(seconds=122)
    assert await second.run_next()  # taken up: goes on after the saved page
    after = await deliveries(pool, endpoint["id"])
    assert len(after) == 6
    assert {m: after[m] for m in page_one} == dict.fromkeys(page_one, "delivered")
    assert sorted(after.values()).count("pending") == 4
    async with pool.connection() as conn:
        finished = await store.get_replay(conn, endpoint["id"], replay.id)
    assert finished is not None
    assert store.replay_view(finished)["status"] == "done"
    assert finished.queued == 6  # each message once; the call placed after it is not in it
    assert not await second.run_next()  # nothing left to run

    async with pool.connection() as conn:  # the stalled replica wakes up: it saves nothing
        assert not await store.replay_progressed(
            conn, replay.id, stalled, cursor=(0, 1), queued=5, leased_until=clock.now
        )
        unchanged = await store.get_replay(conn, endpoint["id"], replay.id)
    assert unchanged == finished

    # done long enough ago, it goes with the delivery log's retention
    await Retention(pool, keep=timedelta(days=30), clock=lambda: now + timedelta(days=29)).prune()
    async with pool.connection() as conn:
        assert await store.get_replay(conn, endpoint["id"], replay.id) is not None
    await Retention(pool, keep=timedelta(days=30), clock=lambda: now + timedelta(days=31)).prune()
    async with pool.connection() as conn:
        assert await store.get_replay(conn, endpoint["id"], replay.id) is None


async def row_version(pool: Pool, replay_id: uuid.UUID) -> tuple[str, datetime]:
    """The replay row's xmin (a new one with every UPDATE) and its lease."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT xmin::text AS version, leased_until FROM webhooks.replays WHERE id = %s",
            (replay_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    return row["version"], row["leased_until"]


async def test_a_replay_waiting_for_its_end_to_be_readable_writes_only_its_lease(
    pool: Pool, url: str
) -> None:
    org = f"org_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    endpoint_id = await new_endpoint(pool, org, now)
    async with pool.connection() as conn:
        assert await eventstore.wait_readable(conn)
    holder = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        # a transaction with an id older than the call's events: they commit but are not
        # readable while it is open
        await holder.execute("BEGIN")
        await holder.execute("SELECT pg_current_xact_id()")
        await placed_call(pool, org)
        replay = await asked_for(pool, endpoint_id, org, now, readable=False)
        clock = ManualClock(now)
        running = asyncio.create_task(Replayer(pool, clock, lease_seconds=60).run_next())
        await asyncio.sleep(0.5)  # its first page is saved (or had nothing to save)
        before = await row_version(pool, replay.id)
        await asyncio.sleep(1.5)
        assert await row_version(pool, replay.id) == before  # not one write while waiting
        assert not running.done()

        clock.now = now + timedelta(seconds=21)  # a third of the lease: renewed
        for _ in range(50):
            version, leased_until = await row_version(pool, replay.id)
            if version != before[0]:
                break
            await asyncio.sleep(0.1)
        assert leased_until == clock.now + timedelta(seconds=60)
    finally:
        await holder.execute("ROLLBACK")
        await holder.close()
    assert await asyncio.wait_for(running, 10)
    async with pool.connection() as conn:
        finished = await store.get_replay(conn, endpoint_id, replay.id)
    assert finished is not None
    assert (finished.state, finished.queued) == ("done", 2)


async def test_a_replay_sends_a_completed_batchs_batch_completed_again(pool: Pool) -> None:
    """batch.completed is made by the intake when a batch's last call ends, not by one event;
    a replay makes it the same way (once, with the same message id), so an endpoint that
    missed it gets it."""
    org = f"org_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    endpoint_id = await new_endpoint(pool, org, now, events=("batch.completed", "call.ended"))
    batch_id = f"batch-{uuid.uuid4().hex}"
    calls = [uuid.uuid4(), uuid.uuid4()]
    opened = [
        Envelope.wrap(
            BatchRequested(
                batch_id=batch_id, total=2, from_number="+14155550199", requested_by="t"
            ),
            stream_id=batch_id,
            organization_id=org,
        ),
        *(
            Envelope.wrap(
                CallRequested(
                    call_id=call_id,
                    to_number=f"+1415555010{i}",
                    from_number="+14155550199",
                    batch_id=batch_id,
                    batch_index=i,
                    requested_by="t",
                ),
                stream_id=call_stream(call_id),
                organization_id=org,
            )
            for i, call_id in enumerate(calls)
        ),
    ]
    async with pool.connection() as conn:
        await eventstore.append(conn, opened)
        for call_id in calls:  # each call ends in a commit of its own
            await eventstore.append(
                conn,
                [
                    Envelope.wrap(
                        CallCanceled(call_id=call_id, reason="batch canceled"),
                        stream_id=call_stream(call_id),
                        organization_id=org,
                    )
                ],
            )
    await asked_for(pool, endpoint_id, org, now)
    assert await Replayer(pool, ManualClock(now), page=2).run_next()
    queued = await deliveries(pool, endpoint_id)
    assert message_id("batch.completed", batch_id) in queued
    assert len(queued) == 3  # two call.ended and one batch.completed
