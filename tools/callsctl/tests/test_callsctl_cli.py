"""The operator CLI against the real PostgreSQL and RabbitMQ (this run's own database and
vhost): every command's help, migrations, status figures, projection rebuild, dead letters,
tailing a call's events, creating API keys, webhooks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import aio_pika
import psycopg
import pytest
from aio_pika.abc import AbstractRobustConnection
from calls_events import CallStatusReported, Envelope
from calls_platform import amqp, eventstore, topology
from calls_platform.db import connect
from callsctl.cli import cli
from click.testing import CliRunner
from webhooks import store as webhooks_store
from webhooks.domain import Message

from .conftest import ORG, Invoke, call_events, parse_json

pytestmark = pytest.mark.integration

COMMANDS = [
    [],
    ["migrate"],
    ["projection"],
    ["projection", "rebuild"],
    ["status"],
    ["dlq"],
    ["dlq", "list"],
    ["dlq", "redrive"],
    ["events"],
    ["events", "tail"],
    ["replay"],
    ["api-keys"],
    ["api-keys", "create"],
    ["webhooks"],
    ["webhooks", "list"],
    ["webhooks", "backlog"],
    ["webhooks", "redeliver"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "callsctl")
def test_callsctl_help_for_every_command(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: cli {' '.join(command)}".rstrip())
    assert "--help" in result.output


async def _append(url: str, events: list[Envelope]) -> list[Envelope]:
    """Append `events` and wait until readers can read them (they read below the cluster's
    oldest running transaction, which another test's may hold back for a moment)."""
    conn = await connect(url)
    async with conn:
        recorded = await eventstore.append(conn, events)
        assert await eventstore.wait_readable(conn)
        return recorded


def _sql(url: str, query: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


CHECKPOINT_AT = (
    "UPDATE call_log.checkpoints SET (transaction_id, position) ="
    " (SELECT transaction_id, position FROM eventstore.events WHERE position = %s)"
    " WHERE name = 'calls'"
)


def test_callsctl_migrate_then_status_reports_lag_backlog_and_queue_depths(
    callsctl: Invoke, database_factory: Callable[[str], str], ctl_amqp_url: str
) -> None:
    url = database_factory("callsctl_status")
    migrated = callsctl("migrate", database_url=url)
    assert "migrations applied" in migrated.stdout
    tables = {r[0] for r in _sql(url, "SELECT schemaname FROM pg_tables")}
    assert {"eventstore", "gateway", "dialer", "call_log", "recordings"} <= tables

    old = datetime.now(UTC) - timedelta(seconds=120)
    calls = [uuid.uuid4() for _ in range(3)]
    asyncio.run(_append(url, [e for c in calls for e in call_events(c, at=old)]))  # 6 events
    # checkpoints are (transaction_id, position): at the 4th and the 2nd event
    _sql(
        url,
        "INSERT INTO eventstore.checkpoints (name, transaction_id, position)"
        " SELECT 'amqp-relay', transaction_id, position FROM eventstore.events WHERE position = 4",
    )
    _sql(url, CHECKPOINT_AT, 2)

    async def fill_queue() -> None:
        connection = await amqp.connect(ctl_amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue("callsctl.status-test", durable=True)
            await queue.purge()
            for n in range(3):
                await channel.default_exchange.publish(
                    aio_pika.Message(str(n).encode()), routing_key=queue.name
                )

    asyncio.run(fill_queue())
    status = parse_json(
        callsctl(
            "status",
            "--json",
            "--queue",
            "callsctl.status-test",
            "--queue",
            "callsctl.no-such-queue",
            database_url=url,
        )
    )
    assert status["head"] == 6
    assert status["outbox_backlog"] == 2
    checkpoints = {(c["table"], c["name"]): c for c in status["checkpoints"]}
    relay = checkpoints[("eventstore.checkpoints", "amqp-relay")]
    projector = checkpoints[("call_log.checkpoints", "calls")]
    assert (relay["position"], relay["lag_positions"]) == (4, 2)
    assert (projector["position"], projector["lag_positions"]) == (2, 4)
    assert 119 < projector["lag_seconds"] < 180
    assert status["queues"] == [
        {"name": "callsctl.status-test", "messages": 3, "consumers": 0},
        {"name": "callsctl.no-such-queue", "messages": None, "consumers": None},
    ]

    # caught up: no lag in either unit
    _sql(url, CHECKPOINT_AT, 6)
    status = parse_json(callsctl("status", "--json", "--no-queues", database_url=url))
    projector = next(c for c in status["checkpoints"] if c["name"] == "calls")
    assert (projector["lag_positions"], projector["lag_seconds"]) == (0, 0.0)

    table = callsctl("status", "--queue", "callsctl.status-test", database_url=url).stdout
    assert "outbox backlog:   2 events" in table
    assert "callsctl.status-test" in table


def test_callsctl_projection_rebuild_replays_the_store_with_progress(
    callsctl: Invoke, database_factory: Callable[[str], str]
) -> None:
    url = database_factory("callsctl_rebuild")
    callsctl("migrate", database_url=url)
    calls = [uuid.uuid4() for _ in range(5)]
    asyncio.run(_append(url, [e for c in calls for e in call_events(c)]))
    # a read model that drifted: a row no event explains
    _sql(url, "UPDATE call_log.checkpoints SET position = 10 WHERE name = 'calls'")

    result = callsctl("projection", "rebuild", database_url=url)

    assert "rebuilt call-log: 10 events in" in result.stdout
    assert "10/10" in result.stderr  # the progress bar's last state
    assert "/s" in result.stderr
    assert _sql(url, "SELECT position FROM call_log.checkpoints WHERE name = 'calls'") == [(10,)]
    rows = _sql(url, "SELECT call_id, status FROM call_log.calls WHERE organization_id = %s", ORG)
    assert sorted(rows) == sorted((c, "in-progress") for c in calls)


async def _dead_letter(amqp_url: str, queue_name: str, count: int) -> list[Envelope]:
    """Publish `count` events to a consumer queue and refuse each, as a consumer does with a
    message it cannot handle: RabbitMQ dead-letters them."""
    envelopes = [e for _ in range(count) for e in call_events(uuid.uuid4(), initiated=False)]
    connection = await amqp.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await amqp.declare_consumer_queue(channel, queue_name, ["CallRequested"])
        exchange = await amqp.declare_events_exchange(channel)
        for e in envelopes:
            await exchange.publish(amqp.to_message(e), routing_key=e.event_type)
        for _ in envelopes:
            message = await queue.get(timeout=5)
            await message.reject(requeue=False)
        await _wait_for_depth(connection, amqp.DEAD_LETTER_QUEUE, count)
    return envelopes


async def _count(connection: AbstractRobustConnection, name: str) -> int:
    """Messages in a queue, counted by taking them (unacked, handed back on close): a quorum
    queue's reported depth lags by seconds."""
    counting = await connection.channel()
    queue = await counting.declare_queue(name, passive=True)
    n = 0
    while await queue.get(no_ack=False, fail=False) is not None:
        n += 1
    await counting.close()
    return n


async def _wait_for_depth(connection: AbstractRobustConnection, name: str, n: int) -> None:
    deadline = time.monotonic() + 10
    while (depth := await _count(connection, name)) != n:
        assert time.monotonic() < deadline, f"{name} holds {depth}, not {n}"
        await asyncio.sleep(0.1)


async def _depths(amqp_url: str, *names: str) -> list[int]:
    connection = await amqp.connect(amqp_url)
    async with connection:
        return [await _count(connection, name) for name in names]


async def _take_all(amqp_url: str, name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await amqp.connect(amqp_url)
    taken = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            taken.append(message)
    return taken


def test_callsctl_dlq_list_shows_dead_letters_and_redrive_puts_them_back(
    callsctl: Invoke, ctl_amqp_url: str
) -> None:
    queue = "callsctl.dlq-test"
    dead = asyncio.run(_dead_letter(ctl_amqp_url, queue, 3))

    listed = parse_json(callsctl("dlq", "list", "--json"))
    assert [d["event_id"] for d in listed] == [str(e.event_id) for e in dead]
    assert {
        (d["event_type"], d["queue"], d["routing_key"], d["reason"], d["count"]) for d in listed
    } == {("CallRequested", queue, "CallRequested", "rejected", 1)}
    assert asyncio.run(_depths(ctl_amqp_url, amqp.DEAD_LETTER_QUEUE)) == [3]  # list keeps them
    table = callsctl("dlq", "list").stdout
    assert "dead letters (3)" in table
    assert "rejected" in table

    # one by id, then the rest
    chosen = str(dead[1].event_id)
    redriven = parse_json(callsctl("dlq", "redrive", "--event-id", chosen, "--json"))
    assert [(r["event_id"], r["ok"], r["queue"]) for r in redriven] == [(chosen, True, queue)]
    assert asyncio.run(_depths(ctl_amqp_url, queue, amqp.DEAD_LETTER_QUEUE)) == [1, 2]
    remaining = parse_json(callsctl("dlq", "list", "--json"))
    assert {d["event_id"] for d in remaining} == {str(dead[0].event_id), str(dead[2].event_id)}

    result = callsctl("dlq", "redrive", "--all")
    assert "re-driven: 2 of 2" in result.stdout
    assert asyncio.run(_depths(ctl_amqp_url, queue, amqp.DEAD_LETTER_QUEUE)) == [3, 0]
    assert parse_json(callsctl("dlq", "list", "--json")) == []

    # what came back is the event as first published, persistent, without the death records
    back = asyncio.run(_take_all(ctl_amqp_url, queue))
    assert sorted(m.message_id or "" for m in back) == sorted(str(e.event_id) for e in dead)
    for message in back:
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert "x-death" not in (message.headers or {})
        assert Envelope.model_validate_json(message.body).event_type == "CallRequested"


def test_callsctl_dlq_redrive_to_a_queue_that_is_gone_keeps_the_dead_letter(
    database_factory: Callable[[str], str], amqp_factory: Callable[[str], str]
) -> None:
    url, vhost = database_factory("callsctl_dlq_gone"), amqp_factory("callsctl_dlq_gone")
    queue = "callsctl.dlq-gone"
    dead = asyncio.run(_dead_letter(vhost, queue, 1))
    asyncio.run(_delete_queue(vhost, queue))

    result = CliRunner().invoke(
        cli, ["--database-url", url, "--amqp-url", vhost, "dlq", "redrive", "--all"]
    )
    assert result.exit_code == 1, result.output
    assert "FAILED: not delivered" in result.output
    assert asyncio.run(_depths(vhost, amqp.DEAD_LETTER_QUEUE)) == [1]
    listed = json.loads(_cli(url, vhost, "dlq", "list", "--json"))
    assert [d["event_id"] for d in listed] == [str(dead[0].event_id)]


async def _delete_queue(amqp_url: str, name: str) -> None:
    connection = await amqp.connect(amqp_url)
    async with connection, connection.channel() as channel:
        await channel.queue_delete(name)


def test_callsctl_dlq_redrive_needs_a_selection(callsctl: Invoke) -> None:
    result = callsctl("dlq", "redrive", expect=2)
    assert "--event-id" in result.output
    missing = str(uuid.uuid4())
    result = callsctl("dlq", "redrive", "--event-id", missing, expect=1)
    assert f"not in the dead-letter queue: {missing}" in result.output


def _read_line(process: subprocess.Popen[str], seconds: float = 15) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line:
            return line
    raise AssertionError("no line from callsctl events tail")


def test_callsctl_events_tail_prints_a_calls_stream_then_follows_it(
    ctl_database_url: str,
) -> None:
    call_id = uuid.uuid4()
    first = asyncio.run(_append(ctl_database_url, call_events(call_id)))
    other = asyncio.run(_append(ctl_database_url, call_events(uuid.uuid4())))
    with subprocess.Popen(
        [sys.executable, "-m", "callsctl", "events", "tail", "--call", str(call_id), "--json"],
        env={**os.environ, "DATABASE_URL": ctl_database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as a shell's background job starts it: SIGINT inherited ignored (Ctrl-C must still
        # stop it: the tail sets its own handlers)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    ) as process:
        try:
            printed = [Envelope.model_validate_json(_read_line(process)) for _ in first]
            assert [(e.event_id, e.event_type, e.stream_version) for e in printed] == [
                (e.event_id, e.event_type, e.stream_version) for e in first
            ]
            status = CallStatusReported(
                call_id=call_id,
                call_sid="CA" + call_id.hex,
                carrier_status="ringing",
                sequence_number=1,
                reported_at=datetime.now(UTC),
            )
            later = asyncio.run(
                _append(
                    ctl_database_url,
                    [Envelope.wrap(status, stream_id=f"call-{call_id}", organization_id=ORG)],
                )
            )
            followed = Envelope.model_validate_json(_read_line(process, seconds=5))
            assert (followed.event_id, followed.stream_version) == (later[0].event_id, 3)
            assert all(e.event_id not in {o.event_id for o in other} for e in printed)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                _, errors = process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()  # not left running into the next tests
                _, errors = process.communicate()
                raise AssertionError(f"events tail did not stop on SIGINT: {errors}") from None
    assert process.returncode == 0, errors


def test_callsctl_events_tail_prints_readable_lines_without_follow(
    callsctl: Invoke, ctl_database_url: str
) -> None:
    call_id = uuid.uuid4()
    recorded = asyncio.run(_append(ctl_database_url, call_events(call_id)))
    lines = callsctl("events", "tail", "--call", str(call_id), "--no-follow").stdout.splitlines()
    assert len(lines) == 2
    for line, event in zip(lines, recorded, strict=True):
        assert event.event_type in line
        assert f"v{event.stream_version}" in line
        assert str(call_id) in line


def test_callsctl_api_keys_create_prints_the_new_key(callsctl: Invoke) -> None:
    result = callsctl(
        "api-keys",
        "create",
        "--org",
        ORG,
        "--name",
        "ci",
        "--scope",
        "calls:read",
        "--scope",
        "calls:write",
    )
    created = json.loads(result.stdout)
    assert set(created) >= {"id", "name", "key", "prefix", "scopes", "created_at"}
    assert created["name"] == "ci"
    assert sorted(created["scopes"]) == ["calls:read", "calls:write"]
    assert created["key"].startswith(created["prefix"])


def _cli(database_url: str, amqp_url: str, *args: str) -> str:
    result = CliRunner().invoke(
        cli, ["--database-url", database_url, "--amqp-url", amqp_url, *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.stdout


async def _recreate_empty(amqp_url: str, name: str) -> None:
    """Delete the queue (with whatever it held) and declare it again, as a consumer would."""
    connection = await amqp.connect(amqp_url)
    async with connection, connection.channel() as channel:
        await channel.queue_delete(name)
        await topology.declare_queue(channel, name)


def test_callsctl_replay_refills_a_recreated_queue_with_what_its_bindings_select(
    database_factory: Callable[[str], str], amqp_factory: Callable[[str], str]
) -> None:
    # a database and vhost of its own: the real queue names, and no other test's publishes
    url, vhost = database_factory("callsctl_replay"), amqp_factory("callsctl_replay")
    _cli(url, vhost, "migrate")  # declares the topology too
    assert asyncio.run(_depths(vhost, *topology.queue_names())) == [0] * len(topology.queue_names())
    old = datetime.now(UTC) - timedelta(hours=2)
    calls = [uuid.uuid4() for _ in range(3)]
    recorded = asyncio.run(
        _append(
            url,
            [e for i, c in enumerate(calls) for e in call_events(c, at=old if i == 0 else None)],
        )
    )
    requests = [e for e in recorded if e.event_type == "CallRequested"]  # positions 1, 3, 5
    asyncio.run(_recreate_empty(vhost, topology.DIALER_REQUESTS))

    replayed = json.loads(
        _cli(url, vhost, "replay", "--queue", "dialer.requests", "--from-position", "0", "--json")
    )
    assert replayed["published"] == 3
    assert (replayed["first_position"], replayed["last_position"]) == (1, 5)
    taken = asyncio.run(_take_all(vhost, topology.DIALER_REQUESTS))
    # only the types the queue binds (no CallInitiated), and in the relay's format
    assert [m.message_id for m in taken] == [str(e.event_id) for e in requests]
    for message, envelope in zip(taken, requests, strict=True):
        expected = amqp.to_message(envelope)
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        # the broker adds its delivery count (quorum queue)
        assert {k: v for k, v in (message.headers or {}).items() if k != "x-delivery-count"} == (
            expected.headers
        )
        assert message.type == envelope.event_type
        assert Envelope.model_validate_json(message.body) == envelope
    # straight to that queue: the other queue binding CallRequested' kin got nothing
    assert asyncio.run(_depths(vhost, topology.RECORDINGS_REQUESTS, amqp.DEAD_LETTER_QUEUE)) == [
        0,
        0,
    ]

    # a window of positions, and a time
    window = json.loads(
        _cli(
            url,
            vhost,
            "replay",
            "--queue",
            "dialer.requests",
            "--from-position",
            "3",
            "--to-position",
            "4",
            "--json",
        )
    )
    assert (window["published"], window["first_position"]) == (1, 3)
    recent = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S%z")
    since = json.loads(
        _cli(url, vhost, "replay", "--queue", "dialer.requests", "--since", recent, "--json")
    )
    assert (since["published"], since["first_position"], since["last_position"]) == (2, 3, 5)
    taken = asyncio.run(_take_all(vhost, topology.DIALER_REQUESTS))
    # the window (position 3), then the recent ones (3 and 5)
    assert [m.message_id for m in taken] == [str(e.event_id) for e in [requests[1], *requests[1:]]]


async def _webhook_endpoint_with_a_failed_delivery(url: str, org: str) -> tuple[str, str]:
    """An endpoint (made the way the webhooks service makes them) whose one delivery failed."""
    now = datetime.now(UTC)
    conn = await connect(url)
    async with conn:
        endpoint = await webhooks_store.create_endpoint(
            conn,
            organization_id=org,
            url="https://hooks.example.com/calls",
            events=["call.queued"],
            description=None,
            secret_sealed="sealed",
            now=now - timedelta(minutes=5),
        )
        message = Message(
            id="msg_" + uuid.uuid4().hex,
            type="call.queued",
            sequence_key=f"call-{uuid.uuid4()}",
            position=1,
            created_at=now - timedelta(minutes=2),
            organization_id=org,
        )
        await webhooks_store.add_deliveries(
            conn, message, [endpoint["id"]], {"x": 1}, now=now - timedelta(minutes=2)
        )
        await conn.execute(
            "UPDATE webhooks.deliveries SET state = 'failed' WHERE endpoint_id = %s",
            (endpoint["id"],),
        )
        cur = await conn.execute(
            "SELECT id FROM webhooks.deliveries WHERE endpoint_id = %s", (endpoint["id"],)
        )
        row = await cur.fetchone()
        assert row is not None
    return str(endpoint["id"]), str(row["id"])


def test_callsctl_webhooks_lists_endpoints_backlog_and_redelivers(
    callsctl: Invoke, ctl_database_url: str
) -> None:
    org = f"org_{uuid.uuid4().hex[:8]}"
    endpoint_id, delivery_id = asyncio.run(
        _webhook_endpoint_with_a_failed_delivery(ctl_database_url, org)
    )
    listed = parse_json(callsctl("webhooks", "list", "--json"))
    mine = [e for e in listed if e["id"] == endpoint_id]
    assert [(e["organization_id"], e["url"]) for e in mine] == [
        (org, "https://hooks.example.com/calls")
    ]
    assert "sealed" not in json.dumps(mine)  # the stored secret never leaves
    assert "secret" not in mine[0]
    backlog = {r["endpoint_id"]: r for r in parse_json(callsctl("webhooks", "backlog", "--json"))}
    assert backlog[endpoint_id]["pending"] == 0  # given up: not pending
    again = parse_json(callsctl("webhooks", "redeliver", delivery_id))
    assert again["status"] == "pending"
    backlog = {r["endpoint_id"]: r for r in parse_json(callsctl("webhooks", "backlog", "--json"))}
    assert backlog[endpoint_id]["pending"] == 1
    assert backlog[endpoint_id]["oldest_pending_age_seconds"] >= 100
    assert org in callsctl("webhooks", "backlog").stdout
    callsctl("webhooks", "redeliver", str(uuid.uuid4()), expect=1)
