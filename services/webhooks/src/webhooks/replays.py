"""Replays (`POST /webhook-endpoints/{id}/replay`): every message of the endpoint's types whose
event happened since a moment, up to the store's last event when the replay was asked for,
queued again from the event store. A replay is a row (webhooks.replays), run by whichever
replica leases it; one cut short (the replica stopped or died) is taken up again when its lease
runs out and goes on past the last page it saved.

The store is folded from its start each time, because the once-only message types
(`call.queued`, `call.answered`, ...) need each stream from its first event; only what lies
past the saved cursor is queued. A batch's `batch.completed` is made as the intake makes it,
when the fold reaches the end of the batch's last call. Pages are read outside any transaction
and each page's deliveries are written, with the cursor, in one short one: a transaction that
holds an id holds back every event-store reader in the cluster (the relay, the projector, the
dialer's watchdogs), so none is held while the store is read. A replica whose lease was taken
over can save nothing more (its page rolls back), so a message is queued again once per replay.

A replay's end is the store's last committed event when it was asked for, which may not be
readable yet (a transaction that began before it committed is still open); the replay waits
for it, writing nothing meanwhile but its lease's renewal."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

import structlog
from calls_platform import eventstore
from calls_platform.db import Pool
from prometheus_client import Counter

from . import history, store
from .domain import BatchTally, Message, StreamState, batch_completed, tally, translate

log = structlog.get_logger(__name__)

POLL_SECONDS: Final = 1.0
LEASE_SECONDS: Final = 60.0
# while the events up to the replay's end are not all readable yet (a transaction that began
# before they committed is still open), wait this long and read again, twice as long each time
# nothing more was readable, up to the most
NOT_YET_READABLE_SECONDS: Final = 0.2
NOT_YET_READABLE_MAX_SECONDS: Final = 2.0

REPLAYED = Counter(
    "webhook_replayed_messages_total", "Messages queued again by replays (POST …/replay)"
)


class LeaseLost(Exception):
    """Another replica took the replay over (this one's lease ran out)."""


class Replayer:
    def __init__(
        self,
        pool: Pool,
        clock: Callable[[], datetime],
        *,
        page: int = history.REPLAY_PAGE,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._page = page
        self._lease = lease_seconds

    async def run(self) -> None:
        """Run replays as they come, one at a time (every replica: each leases its own)."""
        while True:
            try:
                ran = await self.run_next()
            except LeaseLost:
                log.warning("webhook_replay_taken_over")
                ran = True
            except Exception:
                log.exception("webhook_replay_failed")
                ran = False
            if not ran:
                await asyncio.sleep(POLL_SECONDS)

    async def run_next(self, *, pages: int | None = None) -> bool:
        """Lease the oldest replay no one runs and run it (at most `pages` pages: a test's
        way of cutting one short); False when there was none."""
        token = uuid.uuid4()
        async with self._pool.connection() as conn:
            replay = await store.lease_replay(conn, token, now=self._clock(), seconds=self._lease)
            endpoint = (
                await store.get_endpoint(conn, replay.organization_id, replay.endpoint_id)
                if replay
                else None
            )
        if replay is None:
            return False
        if endpoint is None:
            return True  # deleted meanwhile: its replays went with it
        types = set(endpoint["events"])
        saved = eventstore.Checkpoint(int(replay.cursor_tx), replay.cursor_position)
        until = eventstore.Checkpoint(int(replay.until_tx), replay.until_position)
        states: dict[str, StreamState] = {}
        batches: dict[str, BatchTally] = {}
        cursor, done = eventstore.START, 0
        last_saved, saved_at = saved, self._clock()
        wait = NOT_YET_READABLE_SECONDS
        while pages is None or done < pages:
            async with self._pool.connection() as conn:  # reads only: takes no transaction id
                page = await history.replay_page(
                    conn, after=cursor, organization_id=replay.organization_id, limit=self._page
                )
            messages: list[Message] = []
            for event, at in page.events:
                if at > until:
                    break  # after the replay was asked for: sent as it happened
                if not event.stream_id.startswith(("call-", "batch-")):
                    continue
                state = states.get(event.stream_id, history.replay_state())
                translation = translate(state, event)
                states[event.stream_id] = translation.state
                made = list(translation.messages)
                completed = tally(batches, translation)
                if completed is not None:  # as the intake makes it: at the last call's end
                    assert event.position is not None
                    made.append(
                        batch_completed(
                            completed,
                            event.organization_id,
                            position=event.position,
                            at=event.occurred_at,
                        )
                    )
                if at <= saved or not history.since(event, replay.since):
                    continue  # queued by an earlier run of this replay, or too old
                messages += [m for m in made if m.type in types]
            finished = page.end >= until
            progress = max(saved, min(page.end, until))
            now = self._clock()
            # a page that queues nothing and moves nothing (folding again what an earlier run
            # saved, or waiting for the end to be readable) is not written, but the lease is
            # renewed a third of the way through it
            renew = now >= saved_at + timedelta(seconds=self._lease / 3)
            if messages or finished or progress != last_saved or renew:
                await self._save(replay, token, messages, progress, now, finished)
                REPLAYED.inc(len(messages))
                last_saved, saved_at = progress, now
            if finished:
                log.info("webhook_replay_done", replay_id=str(replay.id))
                return True
            if page.full:
                wait = NOT_YET_READABLE_SECONDS
            else:
                await asyncio.sleep(wait)
                wait = wait * 2 if page.end == cursor else NOT_YET_READABLE_SECONDS
                wait = min(wait, NOT_YET_READABLE_MAX_SECONDS)
            cursor = page.end
            done += 1
        return True

    async def _save(
        self,
        replay: store.ReplayRow,
        token: uuid.UUID,
        messages: list[Message],
        cursor: eventstore.Checkpoint,
        now: datetime,
        finished: bool,
    ) -> None:
        """Queue a page's messages and move the cursor, in one short transaction; LeaseLost
        (and the page rolled back) when another replica took the replay over."""
        async with self._pool.connection() as conn, conn.transaction():
            await store.requeue_messages(conn, replay.endpoint_id, messages, now=now)
            if not await store.replay_progressed(
                conn,
                replay.id,
                token,
                cursor=cursor,
                queued=len(messages),
                leased_until=now + timedelta(seconds=self._lease),
                done_at=now if finished else None,
            ):
                raise LeaseLost(str(replay.id))
