"""What every service's composition root shares: its admin commands, building its parts in
one place so that nothing leaks, serving, and stopping its background tasks.

A service describes itself once (`Service`: its name and schema, whether it talks to
RabbitMQ), builds its parts in one function handed a `Parts` (`service_app`), and runs with
`run_service`. Everything `Parts` opens (pools, HTTP sessions, the broker and its channel)
is closed in reverse order when the service stops, or as soon as a later step fails while it
starts: a broker that cannot be reached leaves no pool open. Every background task is created,
named, through `Parts.task`, in the composition root; on stop, the consumers stop taking work
first (and drain), then every task is cancelled and awaited, then the resources close.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import structlog
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection
from aiohttp import web

from . import amqp, topology
from .db import Pool, is_reachable, open_pool
from .http import new_app
from .lifecycle import repeat, serve, stop_if_cancelling, stop_tasks
from .logging import configure_logging
from .migrate import migrate_service
from .publishing import RelayHealth
from .relay import start_relay
from .settings import DEFAULT_DATABASE_URL, broker_env, service_env

__all__ = [
    "DEFAULT_DATABASE_URL",
    "Parts",
    "Service",
    "amqp_url_from_env",
    "repeat",
    "run_service",
    "serve",
    "service_app",
    "stop_if_cancelling",
    "stop_tasks",
]

log = structlog.get_logger(__name__)

T = TypeVar("T")

Command = Callable[[str, list[str]], Coroutine[Any, Any, None]]
"""An admin command (`python -m <service> <command> [args…]`): given DATABASE_URL and the
arguments after the command's name."""


class StartSettings(Protocol):
    """What `service_app` reads of a service's settings (calls_platform.settings' fields)."""

    @property
    def database_url(self) -> str: ...

    @property
    def migrate_on_start(self) -> bool: ...


class ServeSettings(StartSettings, Protocol):
    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def json_logs(self) -> bool: ...

    @property
    def log_level(self) -> str: ...


S = TypeVar("S", bound=ServeSettings)


@dataclass(frozen=True)
class Service:
    """A service as its composition root names it: `name` in logs ("api-gateway"), `schema`
    its PostgreSQL schema (and package of its migrations), `broker` whether it uses RabbitMQ
    (its `migrate` then declares the topology too)."""

    name: str
    schema: str
    broker: bool = True

    async def migrate(self, database_url: str, amqp_url: str | None = None) -> None:
        """The event store's and the service schema's migrations and, given `amqp_url`, the
        RabbitMQ topology (`python -m <service> migrate` does all of them, with AMQP_URL)."""
        await migrate_service(database_url, self.schema, amqp_url=amqp_url)


class Parts:
    """What a composition root opens while its service starts, each closed when it stops or
    when a later step fails; its background tasks and consumers; its /readyz checks."""

    def __init__(self, app: web.Application, stack: AsyncExitStack) -> None:
        self.app = app
        self._stack = stack
        self._checks: dict[str, Callable[[], Awaitable[bool]]] = {}
        self._relay_health: RelayHealth | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._consumers: list[tuple[AbstractQueue, str, float]] = []

    # -- resources: closed in reverse order of opening

    async def enter(self, context: AbstractAsyncContextManager[T]) -> T:
        """Enter `context` (an HTTP session, a storage backend), exited when the service stops."""
        return await self._stack.enter_async_context(context)

    def close_with(self, callback: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Await `callback(*args)` when the service stops (in reverse order of registration)."""
        self._stack.push_async_callback(callback, *args)

    async def pool(
        self,
        database_url: str,
        *,
        name: str,
        max_size: int,
        settings: Mapping[str, str] | None = None,
        ready: bool = False,
    ) -> Pool:
        """A connection pool, closed when the service stops; `ready`: /readyz's `database`
        check is whether it reaches PostgreSQL."""
        pool = await open_pool(database_url, name=name, max_size=max_size, settings=settings)
        self.close_with(pool.close)
        if ready:
            self.check("database", lambda: is_reachable(pool))
        return pool

    async def broker(
        self, amqp_url: str, *, name: str = "calls", prefetch: int
    ) -> tuple[AbstractRobustConnection, AbstractChannel]:
        """A connection to RabbitMQ (its state /readyz's `broker` check) and a channel taking
        up to `prefetch` unacked messages; both closed when the service stops."""
        health = amqp.BrokerHealth()
        self.check("broker", _sync(lambda: health.connected))
        connection = await amqp.connect(amqp_url, name=name)
        self.close_with(connection.close)
        health.watch(connection)
        channel = await connection.channel()
        self.close_with(channel.close)
        await channel.set_qos(prefetch_count=prefetch)
        return connection, channel

    # -- readiness

    def check(self, name: str, check: Callable[[], Awaitable[bool]]) -> None:
        """A /readyz check called `name`."""
        self._checks[name] = check

    @property
    def relay_health(self) -> RelayHealth:
        """The health of this process's relay candidate: its checks and reasons are part of
        /readyz from the moment it is asked for (whether or not the relay runs in process)."""
        if self._relay_health is None:
            health = self._relay_health = RelayHealth()
            for name in health.checks():
                self.check(name, _sync(functools.partial(_relay_check, health, name)))
        return self._relay_health

    async def readiness(self) -> Mapping[str, bool]:
        return {name: await check() for name, check in self._checks.items()}

    def reasons(self) -> Mapping[str, str]:
        return self._relay_health.reasons() if self._relay_health is not None else {}

    # -- work: consumers stop first, then every task, then the resources close

    def task(self, work: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run `work` as the background task `name`, cancelled and awaited on stop."""
        task = asyncio.create_task(work, name=name)
        self._tasks.append(task)
        return task

    def adopt(self, tasks: Iterable[asyncio.Task[Any]]) -> None:
        """Background tasks a library started (its names), stopped like `task`'s."""
        self._tasks.extend(tasks)

    def relay(self, database_url: str, pool: Pool, broker: AbstractRobustConnection) -> None:
        """Make this process an outbox-relay candidate (unless RELAY_IN_PROCESS is false): the
        tasks `append-listener` and `outbox-relay` (calls_platform.relay.start_relay)."""
        self.adopt(start_relay(database_url, pool, broker, health=self.relay_health))

    async def consume(
        self,
        channel: AbstractChannel,
        queue: str,
        handler: amqp.Handler,
        *,
        permanent_errors: tuple[type[Exception], ...] = (),
        drain_seconds: float = 0.0,
    ) -> None:
        """Declare `queue` and consume it (calls_platform.amqp.consume); on stop, stop taking
        messages first and give the handlers running up to `drain_seconds` to finish."""
        declared = await topology.declare_queue(channel, queue)
        tag = await amqp.consume(declared, handler, permanent_errors=permanent_errors)
        self._consumers.append((declared, tag, drain_seconds))

    async def consume_in_batches(
        self,
        connection: AbstractRobustConnection,
        queue: str,
        handler: amqp.BatchHandler,
        *,
        prefetch: int,
    ) -> None:
        """Like `consume`, handing the handler batches (calls_platform.amqp.consume_in_batches),
        on a channel of the queue's own (a batch is settled with one `multiple` ack, which
        would settle another consumer's deliveries on a shared channel)."""
        channel = await connection.channel()
        self.close_with(channel.close)
        await channel.set_qos(prefetch_count=prefetch)
        declared = await topology.declare_queue(channel, queue)
        tag = await amqp.consume_in_batches(declared, handler)
        self._consumers.append((declared, tag, 0.0))

    async def take_waiting(
        self, connection: AbstractRobustConnection, queue: str, handler: amqp.BatchHandler
    ) -> int:
        """Handle what is waiting in `queue` now (calls_platform.amqp.take_waiting), on a
        channel closed afterwards; return how many events. For a queue whose backlog must take
        effect before the work started after this call (the dialer's cancels before it dials);
        consume it afterwards as usual."""
        async with connection.channel() as channel:
            declared = await topology.declare_queue(channel, queue)
            return await amqp.take_waiting(declared, handler)

    async def stop_work(self) -> None:
        """Stop taking messages (each consumer drains), then stop every background task."""
        consumers, self._consumers = self._consumers, []
        for queue, tag, drain_seconds in consumers:
            await amqp.stop_consuming(queue, tag, drain_seconds=drain_seconds)
        tasks, self._tasks = self._tasks, []
        await stop_tasks(tasks)


def _relay_check(health: RelayHealth, name: str) -> bool:
    return health.checks()[name]


def _sync(value: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return value()

    return check


def service_app(
    service: Service,
    settings: StartSettings,
    build: Callable[[Parts], Awaitable[None]],
    *,
    client_max_size: int = 1024**2,
) -> web.Application:
    """The service's aiohttp application (calls_platform.http.new_app). On startup it applies
    the migrations if `settings.migrate_on_start`, then `build` opens the service's parts
    through the `Parts` it is handed; on cleanup (or if a step of `build` fails) the parts
    stop and close in reverse. The routes are the caller's to add."""
    parts: list[Parts] = []

    async def readiness() -> Mapping[str, bool]:
        return await parts[0].readiness() if parts else {}

    def reasons() -> Mapping[str, str]:
        return parts[0].reasons() if parts else {}

    app = new_app(readiness=readiness, reasons=reasons, client_max_size=client_max_size)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            amqp_url: str | None = getattr(settings, "amqp_url", None) if service.broker else None
            await service.migrate(settings.database_url, amqp_url)
        async with AsyncExitStack() as stack:
            built = Parts(app, stack)
            parts[:] = [built]
            try:
                await build(built)
                yield
            finally:
                await built.stop_work()

    app.cleanup_ctx.append(resources)
    return app


def run_service(
    service: Service,
    settings: Callable[[], S],
    create_app: Callable[[S], web.Application],
    *,
    shutdown_timeout: float,
    commands: Mapping[str, Command] | None = None,
    argv: Sequence[str] | None = None,
) -> None:
    """`python -m <service>`: serve `create_app(settings())` until SIGTERM/SIGINT, or run
    `migrate` or another of the service's admin `commands` named by the first argument."""
    args = list(sys.argv[1:] if argv is None else argv)
    known: dict[str, Command] = {"migrate": _migrate_command(service), **(commands or {})}
    if args and args[0] in known:
        env = service_env()
        configure_logging(args[0], json_logs=env["json_logs"])
        asyncio.run(known[args[0]](env["database_url"], args[1:]))
        return
    read = settings()
    configure_logging(service.name, json_logs=read.json_logs, level=read.log_level)
    serve(create_app(read), host=read.host, port=read.port, shutdown_timeout=shutdown_timeout)


def _migrate_command(service: Service) -> Command:
    async def migrate(database_url: str, args: list[str]) -> None:
        if args:
            raise SystemExit(f"{service.name} migrate: takes no arguments ({' '.join(args)})")
        await service.migrate(database_url, amqp_url_from_env() if service.broker else None)

    return migrate


def amqp_url_from_env() -> str:
    """AMQP_URL, as the services read it (for admin commands such as migrate)."""
    amqp_url: str = broker_env()["amqp_url"]
    return amqp_url
