"""How long the delivery log keeps what it sent: a delivery that finished (delivered, or given
up) more than WEBHOOKS_DELIVERY_RETENTION_DAYS ago is deleted with its attempts (and a replay
done as long ago with it). Pending
deliveries are never deleted. Runs in every replica (each deletes rows the others are not
deleting); a replay (`POST /webhook-endpoints/{id}/replay`) queues messages again from the
event store, which keeps everything, so nothing a customer can ask for again is lost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

import structlog
from calls_platform.db import Pool
from prometheus_client import Counter

from . import store

log = structlog.get_logger(__name__)

# rows deleted per statement (one short transaction each: the sender and the API go on)
CHUNK: Final = 1000
EVERY_SECONDS: Final = 600.0

PRUNED = Counter(
    "webhook_deliveries_pruned_total",
    "Finished deliveries deleted from the delivery log once older than the retention",
)


class Retention:
    def __init__(
        self,
        pool: Pool,
        *,
        keep: timedelta,
        clock: Callable[[], datetime],
        chunk: int = CHUNK,
    ) -> None:
        self._pool = pool
        self._keep = keep
        self._clock = clock
        self._chunk = chunk

    async def prune(self) -> int:
        """Delete every delivery finished before now minus the retention; return how many."""
        cutoff = self._clock() - self._keep
        total = 0
        while True:
            async with self._pool.connection() as conn:
                deleted = await store.prune_finished(
                    conn, finished_before=cutoff, limit=self._chunk
                )
            total += deleted
            PRUNED.inc(deleted)
            if deleted < self._chunk:
                break
        async with self._pool.connection() as conn:  # and the replays done as long ago
            await store.prune_replays(conn, finished_before=cutoff)
        if total:
            log.info("webhook_deliveries_pruned", deleted=total, finished_before=cutoff)
        return total

    async def run(self, every: float = EVERY_SECONDS) -> None:
        """Prune now and every `every` seconds until cancelled."""
        while True:
            try:
                await self.prune()
            except Exception:
                log.exception("webhook_retention_failed")
            await asyncio.sleep(every)
