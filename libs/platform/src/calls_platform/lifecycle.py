"""Running a service's background work: serving until a signal, periodic steps, and stopping
tasks so that a lost CancelledError does not keep a shutdown waiting. (calls_platform.service
re-exports these; modules it builds on, such as the relay, import them from here.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import psycopg
import structlog
from aiohttp import web

log = structlog.get_logger(__name__)


def serve(app: web.Application, *, host: str, port: int, shutdown_timeout: float = 20) -> None:
    """Serve until SIGTERM/SIGINT, then drain: stop taking requests, let in-flight ones finish
    (up to `shutdown_timeout`), then run the app's cleanup (consumers, tasks, pools)."""
    web.run_app(
        app, host=host, port=port, access_log=None, print=None, shutdown_timeout=shutdown_timeout
    )


async def repeat(step: Callable[[], Awaitable[Any]], *, every_seconds: float, name: str) -> None:
    """Await `step` every `every_seconds`, forever (a background task's body): an unreachable
    database or a failing step is logged and the next round tries again."""
    while True:
        stop_if_cancelling()
        try:
            await step()
        except psycopg.OperationalError as exc:
            log.warning("periodic_database_unavailable", task=name, error=str(exc))
        except Exception:
            log.exception("periodic_failed", task=name)
        stop_if_cancelling()
        await asyncio.sleep(every_seconds)


def stop_if_cancelling() -> None:
    """Raise CancelledError if the current task was asked to stop, even if a library lost the
    CancelledError on the way: on Python 3.11 asyncio.wait_for (which psycopg_pool and aiormq
    use) returns normally when the cancellation coincides with its wakeup. A background loop
    that went on regardless would keep `stop_tasks`, and so the service's shutdown, waiting."""
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        raise asyncio.CancelledError


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel background tasks and wait for each to finish its own cleanup."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
