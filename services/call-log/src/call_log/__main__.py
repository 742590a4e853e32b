"""Composition root of the call log: builds every dependency and runs the service.

One process serves the internal query API and, while it holds the projector leadership lock,
runs the projector. Extra replicas serve reads and stand by to take over projecting.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import structlog
from aiohttp import web
from calls_platform import leader
from calls_platform.db import connect, open_pool
from calls_platform.notify import AppendListener
from calls_platform.service import Parts, Service, run_service, service_app

from . import api
from .config import Settings
from .projector import Projector, rebuild

log = structlog.get_logger(__name__)

SERVICE = Service("call-log", schema="call_log", broker=False)
# the event store's and the call_log schema's migrations (the call log uses no broker)
migrate = SERVICE.migrate


def create_app(settings: Settings) -> web.Application:
    async def build(parts: Parts) -> None:
        pool = await parts.pool(settings.database_url, name="call-log", max_size=20, ready=True)
        parts.app[api.POOL] = pool
        # the projector's own connections: readers waiting to read their writes hold the API's
        # pool, and a projector waiting behind them made every reader wait its full deadline
        # (GET /calls p50 3.3 s at 32 connections, see docs/benchmarks.md)
        projector_pool = await parts.pool(
            settings.database_url, name="call-log-projector", max_size=2
        )
        listener = AppendListener(settings.database_url)
        projector = Projector(projector_pool, listener)
        parts.task(listener.run(), name="append-listener")
        parts.task(
            leader.run_as_leader(settings.database_url, "call-log-projector", projector.run),
            name="projector",
        )

    app = service_app(SERVICE, settings, build)
    app[api.READ_WAIT] = settings.read_your_writes_seconds
    api.setup_routes(app)
    return app


async def rebuild_read_models(
    database_url: str, *, progress: Callable[[int, int], None] | None = None
) -> int:
    """Replay the whole event store into empty read models; returns the events applied.

    Takes the projector's leadership lock first, so running replicas wait instead of
    projecting into the tables being rebuilt. `progress` is told (events applied, head
    position) after each batch (the operator CLI draws its progress bar from it).
    """
    conn = await connect(database_url)
    async with conn:
        cur = await conn.execute(
            "SELECT pg_try_advisory_lock(%s) AS ok", (leader.lock_key("call-log-projector"),)
        )
        row = await cur.fetchone()
        if not (row and row["ok"]):
            log.warning("rebuild_waiting_for_projector_leadership")
            await conn.execute(
                "SELECT pg_advisory_lock(%s)", (leader.lock_key("call-log-projector"),)
            )
        pool = await open_pool(database_url, name="call-log-rebuild", max_size=2)
        async with pool:
            return await rebuild(pool, progress=progress)


async def _rebuild_command(database_url: str, args: list[str]) -> None:
    """`python -m call_log rebuild`: progress and rate as text on stderr."""
    if args:
        raise SystemExit(f"call-log rebuild: takes no arguments ({' '.join(args)})")
    started = time.monotonic()
    total = await rebuild_read_models(database_url, progress=_print_progress(started))
    elapsed = time.monotonic() - started
    print(file=sys.stderr)
    print(f"rebuilt: {total} events in {elapsed:.1f} s ({total / max(elapsed, 1e-9):.0f}/s)")


def _print_progress(started: float) -> Callable[[int, int], None]:
    def report(done: int, head: int) -> None:
        rate = done / max(time.monotonic() - started, 1e-9)
        print(f"\r{done}/{head} events ({rate:.0f}/s)", end="", file=sys.stderr, flush=True)

    return report


COMMANDS = {"rebuild": _rebuild_command}


def main() -> None:
    run_service(SERVICE, Settings.from_env, create_app, shutdown_timeout=10, commands=COMMANDS)


if __name__ == "__main__":
    main()
