"""Every service drains on SIGTERM: started as a real process, given work in flight, sent
SIGTERM, it exits 0 within its drain time and nothing is lost.

These tests stop and restart services, so they run a system of their own (own database,
RabbitMQ vhost, simulator and ports), never the session's shared one.
"""

from __future__ import annotations

import asyncio
import io
import signal
import time
import uuid
import wave
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiohttp
import psycopg
import pytest
from aiohttp import web
from calls_events import Envelope, InboundCallReceived, RecordingReported
from calls_platform import amqp, eventstore
from calls_platform.db import connect
from calls_testing import new_org_id, unique_number
from calls_testing.plugin import AmqpFactory, DatabaseFactory
from calls_testing.system import (
    Service,
    System,
    free_port,
    wait_ready,
)
from psycopg.rows import dict_row

from tests.conftest import e2e_system, running

pytestmark = pytest.mark.integration

# what each composition root passes to serve() (gateway and call-log 10 s, dialer and
# recordings 20 s), plus start-up slack on a busy two-core machine
DRAIN_SECONDS = {"gateway": 10, "call-log": 10, "dialer": 20, "recordings": 20}
SLACK_SECONDS = 8


@pytest.fixture(scope="module")
def shutdown_services(
    database_factory: DatabaseFactory,
    amqp_factory: AmqpFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[System]:
    yield from e2e_system(
        "shutdown", database_factory, amqp_factory, tmp_path_factory, name_prefix="shutdown-"
    )


@pytest.fixture
async def shutdown_system(shutdown_services: System) -> System:
    """The module's system, every service running and ready (tests restart what they stop)."""
    return await running(shutdown_services)


def under_test(system: System, name: str) -> tuple[str, Service, str]:
    """What a test of one service's shutdown starts from: the database URL, the service and a
    new organization."""
    return system.database_url, system.services[name], new_org_id()


def amqp_url(system: System) -> str:
    return system.services["gateway"].env["AMQP_URL"]


async def fetch(url: str, query: str, *params: object) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall()


async def until(
    check: Callable[[], Awaitable[bool]], seconds: float = 20, what: str = "condition"
) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def sigterm_and_wait(service: Service, drain_seconds: float) -> tuple[int, float]:
    """Send SIGTERM; return the exit code and how long the process took to exit."""
    assert service.process is not None
    assert service.process.poll() is None, f"{service.name} is not running"
    started = time.monotonic()
    service.process.send_signal(signal.SIGTERM)
    deadline = started + drain_seconds + SLACK_SECONDS
    while (code := service.process.poll()) is None:
        if time.monotonic() > deadline:
            service.process.kill()
            service.process.wait()
            pytest.fail(f"{service.name} still running {drain_seconds + SLACK_SECONDS}s after TERM")
        await asyncio.sleep(0.05)
    return code, time.monotonic() - started


async def stream_types(url: str, call_id: uuid.UUID | str) -> list[str]:
    rows = await fetch(
        url,
        "SELECT event_type FROM eventstore.events WHERE stream_id = %s ORDER BY stream_version",
        f"call-{call_id}",
    )
    return [r["event_type"] for r in rows]


async def messages_in(url: str, queue_name: str) -> list[Envelope]:
    """The events in a queue (ready or held by a consumer), read by taking them unacked and
    handing them back: a quorum queue's reported depth lags by seconds."""
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        found = []
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            found.append(Envelope.model_validate_json(message.body))
        return found


# --- gateway -------------------------------------------------------------------------------


async def test_gateway_answers_a_request_in_flight_at_sigterm_and_its_event_is_stored(
    shutdown_system: System,
) -> None:
    url, gateway, org = under_test(shutdown_system, "gateway")
    # block inserts into the event store (appends take no lock of their own): the request
    # commits only when we let it
    blocker = await connect(url)
    async with blocker:
        await blocker.execute("BEGIN")
        await blocker.execute("LOCK TABLE eventstore.events IN SHARE MODE")
        async with aiohttp.ClientSession() as http:
            request = asyncio.create_task(
                http.post(
                    f"{shutdown_system.gateway}/calls",
                    json={"to_number": "+14155550123", "from_number": "+14155550199"},
                    headers=shutdown_system.auth(org),
                )
            )

            async def waiting_on_the_lock() -> bool:
                rows = await fetch(
                    url,
                    "SELECT count(*) AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                    " WHERE l.locktype = 'relation' AND NOT l.granted"
                    " AND l.relation = 'eventstore.events'::regclass"
                    " AND d.datname = current_database()",
                )
                return bool(rows[0]["n"])

            await until(waiting_on_the_lock, what="the POST to wait to insert its event")
            terminated = asyncio.create_task(sigterm_and_wait(gateway, DRAIN_SECONDS["gateway"]))
            await asyncio.sleep(1.0)
            assert not terminated.done(), "the gateway exited with a request in flight"
            # it takes no new work meanwhile
            with pytest.raises(aiohttp.ClientConnectionError):
                async with http.get(f"{shutdown_system.gateway}/healthz") as r:
                    await r.read()
            await blocker.execute("ROLLBACK")
            async with await request as response:
                assert response.status == 202, await response.text()
                call_id = (await response.json())["call_id"]
    code, took = await terminated
    assert code == 0
    assert took < DRAIN_SECONDS["gateway"] + SLACK_SECONDS
    # the 202 was durable: the request is in the store, once (the dialer may have moved on)
    types = await stream_types(url, call_id)
    assert types[0] == "CallRequested"
    assert types.count("CallRequested") == 1


# --- dialer --------------------------------------------------------------------------------


async def test_dialer_finishes_and_records_a_dial_in_flight_at_sigterm(
    shutdown_system: System, http: aiohttp.ClientSession
) -> None:
    sim = shutdown_system.sim(http)
    url, dialer, org = under_test(shutdown_system, "dialer")
    to_number = unique_number()
    before = await sim.create_requests()
    # slow creates keep the dial in flight; no callbacks, so nothing new reaches the dialer's
    # queue after it stops and whatever is left there was left by it
    await sim.set_faults(create_delay_seconds=3.0, drop_callbacks=True)
    try:
        async with (
            http.post(
                f"{shutdown_system.gateway}/calls",
                json={"to_number": to_number, "from_number": "+14155550199"},
                headers=shutdown_system.auth(org),
            ) as r,
        ):
            assert r.status == 202, await r.text()
            call_id = (await r.json())["call_id"]

        async def create_request_sent() -> bool:
            return int(await sim.create_requests()) > before

        await until(create_request_sent, what="the dialer to ask the carrier")
        terminated_at = datetime.now(UTC)
        code, took = await sigterm_and_wait(dialer, DRAIN_SECONDS["dialer"])
    finally:
        await sim.set_faults(create_delay_seconds=0.0, drop_callbacks=False)

    assert code == 0
    assert took >= 1.5, "the dialer did not wait for the create request it had in flight"
    assert took < DRAIN_SECONDS["dialer"] + SLACK_SECONDS
    # the dial's result was recorded before exit: the carrier's SID, not an ambiguous `dialing`
    assert "CallInitiated" in await stream_types(url, call_id)
    rows = await fetch(url, "SELECT state FROM dialer.dials WHERE call_id = %s", call_id)
    assert [r["state"] for r in rows] != ["dialing"]
    calls = await sim.calls(to_number)
    assert len(calls) == 1
    # nothing it was given was left unacked or unconsumed for the next dialer (events appended
    # after it stopped, such as a late report on an earlier test's call, wait there rightly)
    for queue in ("dialer.requests", "dialer.control"):
        left = await messages_in(amqp_url(shutdown_system), queue)
        assert [e for e in left if e.occurred_at <= terminated_at] == []


# --- call-log ------------------------------------------------------------------------------


def inbound_call(org: str) -> Envelope:
    call_id = uuid.uuid4()
    return Envelope.wrap(
        InboundCallReceived(
            call_id=call_id,
            call_sid="CA" + call_id.hex,
            from_number="+14155550100",
            to_number="+14155550199",
            agent_id=uuid.uuid4(),
            agent_name="Shutdown",
            received_at=datetime.now(UTC),
        ),
        stream_id=f"call-{call_id}",
        organization_id=org,
    )


async def test_call_log_stops_projecting_at_a_consistent_checkpoint_on_sigterm(
    shutdown_system: System,
) -> None:
    url, call_log, org = under_test(shutdown_system, "call-log")
    async with await connect(url) as conn:
        start = await eventstore.head_position(conn)
        recorded = await eventstore.append(conn, [inbound_call(org) for _ in range(20_000)])
    head = recorded[-1].position or 0

    async def projecting() -> bool:
        rows = await fetch(url, "SELECT position FROM call_log.checkpoints WHERE name = 'calls'")
        return bool(rows[0]["position"] > start)

    await until(projecting, what="the projector to start on the new events")
    code, took = await sigterm_and_wait(call_log, DRAIN_SECONDS["call-log"])
    assert code == 0
    assert took < DRAIN_SECONDS["call-log"] + SLACK_SECONDS

    async def consistent() -> int:
        [checkpoint] = await fetch(
            url, "SELECT position FROM call_log.checkpoints WHERE name = 'calls'"
        )
        position = int(checkpoint["position"])
        [rows] = await fetch(
            url,
            "SELECT count(*) AS n, coalesce(max(last_position), 0) AS last"
            " FROM call_log.calls WHERE organization_id = %s",
            org,
        )
        [counted] = await fetch(
            url,
            "SELECT coalesce(sum(calls), 0) AS n FROM call_log.call_counts"
            " WHERE organization_id = %s",
            org,
        )
        applied = sum(1 for e in recorded if (e.position or 0) <= position)
        # exactly the events up to the checkpoint are in the read model, counters included
        assert rows["n"] == applied
        assert rows["last"] <= position
        assert counted["n"] == applied
        return applied

    stopped_at = await consistent()
    call_log.start()
    await wait_ready(call_log.url)

    async def caught_up() -> bool:
        rows = await fetch(url, "SELECT position FROM call_log.checkpoints WHERE name = 'calls'")
        return bool(rows[0]["position"] >= head)

    await until(caught_up, seconds=60, what="the projector to catch up after restart")
    assert await consistent() == len(recorded) >= stopped_at


# --- recordings ----------------------------------------------------------------------------


def wav_bytes(seconds: float = 1.0) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * int(8000 * seconds))
    return buffer.getvalue()


class SlowCarrier:
    """Serves one recording slowly (the whole body takes `seconds`), so a download is in
    flight for as long as a test needs."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.body = wav_bytes()
        self.started = asyncio.Event()
        self.requests = 0
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.started.set()
        response = web.StreamResponse(headers={"Content-Type": "audio/x-wav"})
        response.content_length = len(self.body)
        await response.prepare(request)
        pieces = 20
        size = len(self.body) // pieces + 1
        for i in range(pieces):
            await response.write(self.body[i * size : (i + 1) * size])
            await asyncio.sleep(self.seconds / pieces)
        await response.write_eof()
        return response

    async def __aenter__(self) -> SlowCarrier:
        app = web.Application()
        app.router.add_get("/recordings/{name}", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def test_recordings_finishes_and_stores_a_download_in_flight_at_sigterm(
    shutdown_system: System,
) -> None:
    url, recordings, org = under_test(shutdown_system, "recordings")
    call_id = uuid.uuid4()
    sid = "RE" + uuid.uuid4().hex
    async with SlowCarrier(seconds=3.0) as carrier:
        report = Envelope.wrap(
            RecordingReported(
                call_id=call_id,
                call_sid="CA" + call_id.hex,
                recording_sid=sid,
                recording_url=f"http://127.0.0.1:{carrier.port}/recordings/{sid}",
                status="completed",
                duration_seconds=1,
                channels=1,
            ),
            stream_id=f"call-{call_id}",
            organization_id=org,
        )
        conn = await connect(url)
        async with conn:
            await eventstore.append(conn, [report])
        await asyncio.wait_for(carrier.started.wait(), 20)
        code, took = await sigterm_and_wait(recordings, DRAIN_SECONDS["recordings"])
        assert code == 0
        assert took >= 1.0, "the recordings service did not wait for its download"
        assert took < DRAIN_SECONDS["recordings"] + SLACK_SECONDS
    # the download finished within the drain and was recorded (and acked) before exit
    assert carrier.requests == 1
    assert await messages_in(amqp_url(shutdown_system), "recordings.requests") == []
    assert [t for t in await stream_types(url, call_id) if t.startswith("Recording")] == [
        "RecordingReported",
        "RecordingStored",
    ]
    rows = await fetch(url, "SELECT state FROM recordings.recordings WHERE recording_sid = %s", sid)
    assert [r["state"] for r in rows] == ["stored"]
    # the report was never dead-lettered on the way
    assert await messages_in(amqp_url(shutdown_system), amqp.DEAD_LETTER_QUEUE) == []
