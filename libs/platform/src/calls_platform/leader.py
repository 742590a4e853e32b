"""Leadership among replicas with a PostgreSQL session advisory lock.

The lock lives as long as one dedicated connection: if the holder dies, PostgreSQL drops the
connection and another replica takes over within one retry interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Callable, Coroutine
from typing import Any

import psycopg
import structlog
from prometheus_client import Counter, Gauge

from .db import connect

log = structlog.get_logger(__name__)

LEADER_WORK_CRASHES = Counter(
    "leader_work_crashes_total",
    "Times the work run under leadership crashed and restarted",
    ["role"],
)
# 0 in every candidate, 1 in the one holding the lock: alerts and dashboards read a leader's
# gauges (backlog, lag) only where this is 1, since a deposed leader keeps its last values.
LEADERSHIP_HELD = Gauge(
    "leadership_held", "1 while this process holds the role's leadership lock", ["role"]
)


def lock_key(name: str) -> int:
    return zlib.crc32(f"leader:{name}".encode())


async def run_as_leader(
    database_url: str,
    name: str,
    work: Callable[[], Coroutine[Any, Any, None]],
    *,
    retry_seconds: float = 2.0,
    on_change: Callable[[bool], None] | None = None,
) -> None:
    """Run `work` only while this process holds the `name` lock; forever, until cancelled.

    If the lock's connection breaks, `work` is cancelled (another replica may take over), and
    this process goes back to trying for the lock. If `work` crashes, the lock is released (a
    standby may take over) and this process competes again after a back-off: a bug hit by one
    event must not silently stop the dial loop, the projector or the relay for good.
    """
    key = lock_key(name)
    held = LEADERSHIP_HELD.labels(name)
    held.set(0)
    while True:
        try:
            conn = await connect(database_url)
            async with conn:
                while True:
                    cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (key,))
                    row = await cur.fetchone()
                    if row and row["ok"]:
                        break
                    await asyncio.sleep(retry_seconds)
                log.info("leadership_acquired", role=name)
                held.set(1)
                if on_change:
                    on_change(True)
                worker = asyncio.create_task(work())
                try:
                    while not worker.done():
                        done, _ = await asyncio.wait({worker}, timeout=retry_seconds)
                        if not done:
                            await conn.execute("SELECT 1")  # raises if the lock is gone
                    worker.result()  # surfaces the worker's error
                    return
                finally:
                    held.set(0)
                    if not worker.done():
                        worker.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await worker
                    if on_change:
                        on_change(False)
        except psycopg.Error as exc:
            log.warning("leadership_lost", role=name, error=str(exc))
            await asyncio.sleep(retry_seconds)
        except Exception:
            LEADER_WORK_CRASHES.labels(name).inc()
            log.exception("leader_work_crashed", role=name)
            await asyncio.sleep(retry_seconds)
