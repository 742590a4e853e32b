"""Replays (`POST /webhook-endpoints/{id}/replay`): every message of the endpoint's types whose
event happened since a moment, queued again from the event store. A replay is a row
(webhooks.replays), run by whichever replica leases it; one cut short (the replica stopped or
died) is taken up again when its lease runs out and goes on past the last page it saved.

The store is folded from its start each time, because the once-only message types
(`call.queued`, `call.answered`, ...) need each stream from its first event; only what lies
past the saved cursor is queued, and each page's deliveries commit with the cursor, so a
message is queued again once per replay however often it is taken up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

import structlog
from calls_platform import eventstore
from calls_platform.db import Pool
from prometheus_client import Counter

from . import history, store
from .domain import StreamState, translate

log = structlog.get_logger(__name__)

POLL_SECONDS: Final = 1.0
LEASE_SECONDS: Final = 60.0

REPLAYED = Counter(
    "webhook_replayed_messages_total", "Messages queued again by replays (POST …/replay)"
)


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
            except Exception:
                log.exception("webhook_replay_failed")
                ran = False
            if not ran:
                await asyncio.sleep(POLL_SECONDS)

    async def run_next(self, *, pages: int | None = None) -> bool:
        """Lease the oldest replay no one runs and run it (at most `pages` pages: a test's
        way of cutting one short); False when there was none."""
        async with self._pool.connection() as conn:
            replay = await store.lease_replay(conn, now=self._clock(), seconds=self._lease)
            endpoint = (
                await store.get_endpoint(conn, replay.organization_id, replay.endpoint_id)
                if replay
                else None
            )
        if replay is None or endpoint is None:
            return replay is not None
        types = set(endpoint["events"])
        saved = eventstore.Checkpoint(int(replay.cursor_tx), replay.cursor_position)
        states: dict[str, StreamState] = {}
        cursor, done = eventstore.START, 0
        while pages is None or done < pages:
            async with self._pool.connection() as conn, conn.transaction():
                events, next_cursor = await history.replay_page(
                    conn, after=cursor, organization_id=replay.organization_id, limit=self._page
                )
                queued = 0
                for event, at in events:
                    if not event.stream_id.startswith(("call-", "batch-")):
                        continue
                    state = states.get(event.stream_id, history.replay_state())
                    translation = translate(state, event)
                    states[event.stream_id] = translation.state
                    if at <= saved or not history.since(event, replay.since):
                        continue  # queued by an earlier run of this replay, or too old
                    for message in translation.messages:
                        if message.type in types:
                            await store.requeue_message(
                                conn, replay.endpoint_id, message, now=self._clock()
                            )
                            queued += 1
                now = self._clock()
                if next_cursor is None:
                    await store.replay_progressed(
                        conn, replay.id, cursor=saved, queued=queued, leased_until=now
                    )
                    await store.replay_done(conn, replay.id, now=now)
                else:  # (also while folding what an earlier run queued: the lease goes on)
                    await store.replay_progressed(
                        conn,
                        replay.id,
                        cursor=max(saved, next_cursor),
                        queued=queued,
                        leased_until=now + timedelta(seconds=self._lease),
                    )
            REPLAYED.inc(queued)
            if next_cursor is None:
                log.info("webhook_replay_done", replay_id=str(replay.id))
                return True
            cursor = next_cursor
            done += 1
        return True
