"""What every service's composition root shares: its admin commands, serving, and stopping
its background tasks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from aiohttp import web

from .logging import configure_logging
from .settings import DEFAULT_DATABASE_URL, service_env

__all__ = ["DEFAULT_DATABASE_URL", "run_command", "serve", "stop_tasks"]

Command = Callable[[str], Coroutine[Any, Any, None]]


def run_command(argv: list[str], commands: Mapping[str, Command]) -> bool:
    """Run `<service> <command>` (e.g. migrate) against DATABASE_URL; False if argv names none."""
    if len(argv) != 1 or argv[0] not in commands:
        return False
    settings = service_env()
    configure_logging(argv[0], json_logs=settings["json_logs"])
    asyncio.run(commands[argv[0]](settings["database_url"]))
    return True


def serve(app: web.Application, *, host: str, port: int, shutdown_timeout: float = 20) -> None:
    """Serve until SIGTERM/SIGINT, then drain: stop taking requests, let in-flight ones finish
    (up to `shutdown_timeout`), then run the app's cleanup (consumers, tasks, pools)."""
    web.run_app(
        app, host=host, port=port, access_log=None, print=None, shutdown_timeout=shutdown_timeout
    )


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel background tasks and wait for each to finish its own cleanup."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
