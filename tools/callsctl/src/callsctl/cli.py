"""The `callsctl` command line: the jobs operators do, one subcommand each.

Settings come from the same environment variables the services read (DATABASE_URL,
AMQP_URL), or from --database-url / --amqp-url.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import aio_pika.exceptions
import click
from calls_events import Envelope
from calls_platform import topology
from calls_platform.settings import DEFAULT_AMQP_URL, DEFAULT_DATABASE_URL
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from .api_keys import ApiKeyError, create_api_key
from .dlq import list_dead_letters, redrive
from .migrate import migrate_all
from .replay import NotReplayable, replay
from .status import KNOWN_QUEUES, Status, gather_status
from .tail import tail_call
from .webhooks import WebhooksError, webhooks_admin

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass(frozen=True)
class Settings:
    database_url: str
    amqp_url: str


def _json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@click.group(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    default=DEFAULT_DATABASE_URL,
    show_default=True,
    help="PostgreSQL holding the event store and the services' schemas [env: DATABASE_URL].",
)
@click.option(
    "--amqp-url",
    envvar="AMQP_URL",
    default=DEFAULT_AMQP_URL,
    show_default=True,
    help="RabbitMQ the services use [env: AMQP_URL].",
)
@click.pass_context
def cli(ctx: click.Context, database_url: str, amqp_url: str) -> None:
    """Operate the Calls backend: migrations, projections, lag, dead letters, event streams,
    API keys and webhooks."""
    ctx.obj = Settings(database_url=database_url, amqp_url=amqp_url)


@cli.command()
@click.pass_obj
def migrate(settings: Settings) -> None:
    """Apply every service's migrations and the event store's, and declare the RabbitMQ
    topology (idempotent)."""
    try:
        migrate_all(
            settings.database_url,
            amqp_url=settings.amqp_url,
            before=lambda package: click.echo(f"migrating {package}", err=True),
        )
    except subprocess.CalledProcessError as exc:
        raise click.ClickException(
            f"{' '.join(exc.cmd[1:])} failed (exit {exc.returncode})"
        ) from exc
    click.echo("migrations applied")


@cli.group()
def projection() -> None:
    """Read models built from the event store."""


@projection.command("rebuild")
@click.option(
    "--name",
    type=click.Choice(["call-log"]),
    default="call-log",
    show_default=True,
    help="Which projection (the call log is the only one).",
)
@click.pass_obj
def projection_rebuild(settings: Settings, name: str) -> None:
    """Empty a projection and replay the whole event store into it, with progress and rate.

    Takes the projector's leadership lock first: running call-log replicas keep serving
    reads and wait to project until the rebuild is done.
    """
    from call_log.__main__ import rebuild_read_models

    console = Console(stderr=True)
    started = time.monotonic()
    with Progress(
        TextColumn(f"rebuilding {name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TextColumn("{task.fields[rate]:>8.0f}/s"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(name, total=None, rate=0.0)

        def report(done: int, head: int) -> None:
            rate = done / max(time.monotonic() - started, 1e-9)
            bar.update(task, completed=done, total=max(head, done), rate=rate)

        total = asyncio.run(rebuild_read_models(settings.database_url, progress=report))
    elapsed = time.monotonic() - started
    click.echo(
        f"rebuilt {name}: {total} events in {elapsed:.1f} s ({total / max(elapsed, 1e-9):.0f}/s)"
    )


def _print_status(status: Status) -> None:
    console = Console()
    console.print(f"event store head: {status.head}")
    console.print(f"outbox backlog:   {status.outbox_backlog} events not yet relayed")
    checkpoints = Table(title="checkpoints")
    for column in ("table", "name", "(transaction, position)", "lag (events)", "lag (s)"):
        checkpoints.add_column(column, justify="right" if "lag" in column else "left")
    for c in status.checkpoints:
        checkpoints.add_row(
            c.table,
            c.name,
            f"({c.transaction_id}, {c.position})",
            str(c.lag_positions),
            f"{c.lag_seconds:.1f}",
        )
    console.print(checkpoints)
    if status.queues:
        queues = Table(title="queues")
        for column in ("queue", "messages", "consumers"):
            queues.add_column(column, justify="left" if column == "queue" else "right")
        for q in status.queues:
            missing = q.messages is None
            queues.add_row(
                q.name,
                "(missing)" if missing else str(q.messages),
                "" if q.consumers is None else str(q.consumers),
            )
        console.print(queues)


@cli.command()
@click.option(
    "--queue",
    "queues",
    multiple=True,
    help="Queue to report (repeatable); default: every queue the services declare.",
)
@click.option("--no-queues", is_flag=True, help="Skip RabbitMQ (PostgreSQL figures only).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of tables.")
@click.pass_obj
def status(settings: Settings, queues: tuple[str, ...], no_queues: bool, as_json: bool) -> None:
    """Projection lag (events and seconds), outbox backlog and queue depths.

    Lag is what is committed after each checkpoint (eventstore.checkpoints: the outbox relay;
    call_log.checkpoints: the call-log projector), in events; seconds are the age of the
    oldest event a reader has not applied yet.
    """
    result = asyncio.run(
        gather_status(
            settings.database_url,
            None if no_queues else settings.amqp_url,
            list(queues or KNOWN_QUEUES),
        )
    )
    if as_json:
        _json(result.as_dict())
    else:
        _print_status(result)


@cli.group()
def dlq() -> None:
    """The dead-letter queue (calls.dead-letter): messages that kept failing."""


@dlq.command("list")
@click.option("--limit", default=100, show_default=True, help="Show at most this many.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array instead of a table.")
@click.pass_obj
def dlq_list(settings: Settings, limit: int, as_json: bool) -> None:
    """Show dead letters: event type and id, the queue and routing key they died in, why,
    and how many times. Nothing is removed."""
    letters = asyncio.run(list_dead_letters(settings.amqp_url, limit=limit))
    if as_json:
        _json([letter.as_dict() for letter in letters])
        return
    table = Table(title=f"dead letters ({len(letters)})")
    for column in ("event type", "event id", "queue", "routing key", "reason", "count", "died"):
        table.add_column(column)
    for d in letters:
        table.add_row(
            d.event_type or "",
            d.event_id or "",
            d.queue or "",
            d.routing_key or "",
            d.reason or "",
            str(d.count),
            d.died_at or "",
        )
    Console().print(table)


@dlq.command("redrive")
@click.option(
    "--event-id",
    "event_ids",
    multiple=True,
    help="Re-drive only this event's dead letter (repeatable).",
)
@click.option("--all", "everything", is_flag=True, help="Re-drive every dead letter.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of results.")
@click.pass_obj
def dlq_redrive(
    settings: Settings, event_ids: tuple[str, ...], everything: bool, as_json: bool
) -> None:
    """Send dead letters back to the queue each died in (persistent, publisher-confirmed;
    the dead letter is acked only after the broker confirms the copy). Fix the cause first:
    consumers are idempotent, so a re-driven event that was already handled changes nothing.
    """
    if not event_ids and not everything:
        raise click.UsageError("name dead letters with --event-id, or pass --all")
    if event_ids and everything:
        raise click.UsageError("--event-id and --all exclude each other")
    results = asyncio.run(redrive(settings.amqp_url, event_ids=None if everything else event_ids))
    if as_json:
        _json([{**r.letter.as_dict(), "ok": r.ok, "error": r.error} for r in results])
    else:
        for r in results:
            outcome = f"→ {r.letter.queue}" if r.ok else f"FAILED: {r.error}"
            click.echo(f"{r.letter.event_type} {r.letter.event_id} {outcome}")
        click.echo(f"re-driven: {sum(r.ok for r in results)} of {len(results)}")
    if any(not r.ok for r in results):
        raise SystemExit(1)
    if event_ids and len(results) < len(set(event_ids)):
        found = {r.letter.event_id for r in results}
        missing = ", ".join(sorted(set(event_ids) - {i for i in found if i}))
        raise click.ClickException(f"not in the dead-letter queue: {missing}")


@cli.group()
def events() -> None:
    """The event store."""


def _event_line(envelope: Envelope) -> str:
    return (
        f"{envelope.position:>8}  {envelope.occurred_at.isoformat()}  "
        f"v{envelope.stream_version:<3} {envelope.event_type:<20} {json.dumps(envelope.data)}"
    )


@events.command("tail")
@click.option("--call", "call_id", type=click.UUID, required=True, help="The call's id.")
@click.option(
    "--follow/--no-follow", default=True, show_default=True, help="Keep printing new events."
)
@click.option("--json", "as_json", is_flag=True, help="Each event as one JSON envelope.")
@click.pass_obj
def events_tail(settings: Settings, call_id: uuid.UUID, follow: bool, as_json: bool) -> None:
    """Print a call's events from the event store, then follow new ones as they are
    appended (Ctrl-C to stop)."""

    def emit(envelope: Envelope) -> None:
        click.echo(envelope.model_dump_json() if as_json else _event_line(envelope))

    asyncio.run(_until_stopped(tail_call(settings.database_url, call_id, emit, follow=follow)))


async def _until_stopped(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` until it returns or SIGINT/SIGTERM arrives (then cancel it and return).
    The handlers are set here, not inherited: a process started in the background by a
    non-interactive shell inherits SIGINT ignored, and then Ctrl-C's signal did nothing."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


Command = TypeVar("Command", bound=Callable[..., Any])


def _position_option(flag: str, help: str) -> Callable[[Command], Command]:
    """An optional event-store position (0 or more)."""
    return click.option(flag, type=click.IntRange(min=0), default=None, help=help)


@cli.command("replay")
@click.option(
    "--queue",
    required=True,
    type=click.Choice([q.name for q in topology.QUEUES if q.exchange == topology.EVENTS_EXCHANGE]),
    help="The consumer queue to refill (its bindings in the topology pick the event types).",
)
@_position_option(
    "--from-position", "First event-store position to replay (inclusive; default 0: everything)."
)
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    default=None,
    help="Only events that occurred at or after this time (ISO 8601; UTC if no offset).",
)
@_position_option(
    "--to-position", "Last position to replay (inclusive; default: the store's head when reached)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a line.")
@click.pass_obj
def replay_command(
    settings: Settings,
    queue: str,
    from_position: int | None,
    since: datetime | None,
    to_position: int | None,
    as_json: bool,
) -> None:
    """Publish to one queue, from the event store, the events its bindings select: to
    backfill a new subscriber or refill a queue that was deleted or purged.

    Straight to that queue (default exchange, routing key = the queue's name), so no other
    queue gets duplicates; persistent, mandatory and publisher-confirmed, in the relay's
    message format. Idempotent for the consumer (it deduplicates by event id).
    """
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    if from_position is not None and to_position is not None and to_position < from_position:
        raise click.UsageError("--to-position is before --from-position")
    try:
        result = asyncio.run(
            replay(
                settings.database_url,
                settings.amqp_url,
                queue,
                from_position=from_position or 0,
                to_position=to_position,
                since=since,
            )
        )
    except NotReplayable as exc:
        raise click.ClickException(str(exc)) from exc
    except aio_pika.exceptions.DeliveryError as exc:
        raise click.ClickException(f"the broker did not take an event: {exc}") from exc
    if as_json:
        _json(result.as_dict())
        return
    click.echo(
        f"replayed {result.published} events to {result.queue}"
        f" (positions {result.first_position}..{result.last_position};"
        f" store read to {result.scanned_to})"
    )


@cli.group("api-keys")
def api_keys() -> None:
    """API keys for organizations (kept by the gateway)."""


@api_keys.command("create")
@click.option("--org", required=True, help="The organization the key acts for.")
@click.option("--name", required=True, help="What the key is for (shown in listings).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="A scope to grant, e.g. calls:read, calls:write (repeatable; default: the gateway's).",
)
@click.pass_obj
def api_keys_create(settings: Settings, org: str, name: str, scopes: tuple[str, ...]) -> None:
    """Create an API key and print it as JSON (id, name, key, prefix, scopes, created_at).

    The key itself is shown only this once: store it where the client will read it.
    """
    try:
        created = create_api_key(settings.database_url, org=org, name=name, scopes=scopes)
    except ApiKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    _json(created)


@cli.group("webhooks")
def webhooks() -> None:
    """Customer webhooks (kept by the webhooks service): endpoints, backlog, redelivery."""


def _webhooks(settings: Settings, *args: str) -> Any:
    try:
        return webhooks_admin(settings.database_url, *args)
    except WebhooksError as exc:
        raise click.ClickException(str(exc)) from exc


Cell = Callable[[dict[str, Any]], str]
"""How a table shows one cell of a row."""


def _webhooks_table(rows: list[dict[str, Any]], as_json: bool, columns: dict[str, Cell]) -> None:
    """`rows` as JSON, or as a table of `columns` (a heading and how to show a row's cell)."""
    if as_json:
        _json(rows)
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*(cell(row) for cell in columns.values()))
    Console().print(table)


def _enabled(endpoint: dict[str, Any]) -> str:
    return (
        "yes" if endpoint["enabled"] else f"no: {endpoint['disabled_reason'] or 'by the customer'}"
    )


ENDPOINT_COLUMNS: Final[dict[str, Cell]] = {
    "organization": lambda e: e["organization_id"],
    "endpoint": lambda e: e["id"],
    "url": lambda e: e["url"],
    "events": lambda e: ", ".join(e["events"]),
    "enabled": _enabled,
    "failing since": lambda e: e["failing_since"] or "",
}
BACKLOG_COLUMNS: Final[dict[str, Cell]] = {
    "organization": lambda r: r["organization_id"],
    "endpoint": lambda r: r["endpoint_id"],
    "enabled": lambda r: "yes" if r["enabled"] else "no",
    "pending": lambda r: str(r["pending"]),
    "oldest pending (s)": lambda r: f"{r['oldest_pending_age_seconds']:.1f}",
}


def _webhooks_listing(name: str, admin: str, help: str, columns: dict[str, Cell]) -> None:
    """`callsctl webhooks <name> [--json]`: the admin command `admin`'s rows."""

    @webhooks.command(name, help=help)
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @click.pass_obj
    def listing(settings: Settings, as_json: bool) -> None:
        _webhooks_table(_webhooks(settings, admin), as_json, columns)


_webhooks_listing(
    "list",
    "endpoints",
    "Every organization's webhook endpoints (never their secrets).",
    ENDPOINT_COLUMNS,
)
_webhooks_listing(
    "backlog",
    "backlog",
    "Deliveries not yet delivered or given up, and the oldest one's age, per endpoint.",
    BACKLOG_COLUMNS,
)


@webhooks.command("redeliver")
@click.argument("delivery_id", type=click.UUID)
@click.pass_obj
def webhooks_redeliver(settings: Settings, delivery_id: uuid.UUID) -> None:
    """Send a delivery again (same message id; a new retry period starts)."""
    _json(_webhooks(settings, "redeliver", str(delivery_id)))


def main() -> None:
    cli()
