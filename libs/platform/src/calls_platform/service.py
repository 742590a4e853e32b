"""What every service's composition root shares: its admin commands, serving, and stopping
its background tasks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from aiohttp import web

from .logging import configure_logging
from .settings import DEFAULT_DATABASE_URL, broker_env, service_env

__all__ = [
    "DEFAULT_DATABASE_URL",
    "amqp_url_from_env",
    "run_command",
    "serve",
    "stop_if_cancelling",
    "stop_tasks",
]

Command = Callable[[str], Coroutine[Any, Any, None]]


def run_command(argv: list[str], commands: Mapping[str, Command]) -> bool:
    """Run `<service> <command>` (e.g. migrate) against DATABASE_URL; False if argv names none."""
    if len(argv) != 1 or argv[0] not in commands:
        return False
    settings = service_env()
    configure_logging(argv[0], json_logs=settings["json_logs"])
    asyncio.run(commands[argv[0]](settings["database_url"]))
    return True


def amqp_url_from_env() -> str:
    """AMQP_URL, as the services read it (for admin commands such as migrate)."""
    amqp_url: str = broker_env()["amqp_url"]
    return amqp_url


def serve(app: web.Application, *, host: str, port: int, shutdown_timeout: float = 20) -> None:
    """Serve until SIGTERM/SIGINT, then drain: stop taking requests, let in-flight ones finish
    (up to `shutdown_timeout`), then run the app's cleanup (consumers, tasks, pools)."""
    web.run_app(
        app, host=host, port=port, access_log=None, print=None, shutdown_timeout=shutdown_timeout
    )


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
