"""Integration: the webhooks service's parts against the real PostgreSQL (and, for the API, the
service as its composition root builds it, with RabbitMQ): events taken out of order are
queued in stream order, once; a call's next delivery waits for the previous one; an endpoint
failing for a day is disabled (by an injected clock); private URLs are refused with a 422."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from calls_events import (
    CallInitiated,
    CallRequested,
    CallStatusReported,
    Envelope,
    Event,
    call_stream,
)
from calls_platform import eventstore
from calls_platform.db import Pool, open_pool
from calls_testing.clocks import ManualClock
from calls_testing.transactions import holding_ids
from webhooks import store
from webhooks.__main__ import create_app, migrate
from webhooks.calllog import CallLog
from webhooks.config import DEV_ENCRYPTION_KEY, Settings
from webhooks.domain import Message, RetryPolicy
from webhooks.intake import Intake
from webhooks.retention import Retention
from webhooks.sender import Sender, SenderSettings
from webhooks.signing import SecretBox, new_secret

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def db(database_factory: Any) -> str:
    url: str = database_factory("webhooks")
    await migrate(url)
    return url


@pytest.fixture(scope="module")
async def pool(db: str) -> AsyncIterator[Pool]:
    pool = await open_pool(db, name="webhooks-test", max_size=10)
    await pool.wait()
    yield pool
    await pool.close()


@pytest.fixture
async def call_log() -> AsyncIterator[CallLog]:
    """A stand-in for the call log's internal API: every call it is asked for, as queued."""

    async def get_call(request: web.Request) -> web.Response:
        return web.json_response({"call_id": request.match_info["call_id"], "status": "queued"})

    app = web.Application()
    app.router.add_get("/internal/orgs/{org}/calls/{call_id}", get_call)
    server = TestServer(app)
    await server.start_server()
    async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as http:
        yield CallLog(http)
    await server.close()


def box() -> SecretBox:
    return SecretBox(DEV_ENCRYPTION_KEY)


async def new_endpoint(pool: Pool, org: str, url: str, events: list[str]) -> uuid.UUID:
    async with pool.connection() as conn:
        row = await store.create_endpoint(
            conn,
            organization_id=org,
            url=url,
            events=events,
            description=None,
            secret_sealed=box().seal(new_secret()),
            now=T0 - timedelta(hours=1),
        )
    endpoint_id: uuid.UUID = row["id"]
    return endpoint_id


async def append_call(
    pool: Pool, org: str, call_id: uuid.UUID, at: list[datetime] | None = None
) -> list[Envelope]:
    events: list[Event] = [
        CallRequested(
            call_id=call_id,
            to_number="+14155550100",
            from_number="+14155550199",
            requested_by="test",
        ),
        CallInitiated(call_id=call_id, call_sid="CA" + "1" * 32),
        *(
            CallStatusReported(
                call_id=call_id,
                call_sid="CA" + "1" * 32,
                carrier_status=status,
                sequence_number=sequence_number,
                reported_at=T0,
            )
            for sequence_number, status in ((2, "in-progress"), (3, "completed"))
        ),
    ]
    times = at or [T0] * len(events)
    async with pool.connection() as conn:
        return await eventstore.append(
            conn,
            [
                Envelope.wrap(e, stream_id=call_stream(call_id), organization_id=org, occurred_at=t)
                for e, t in zip(events, times, strict=True)
            ],
        )


async def queued(pool: Pool, endpoint_id: uuid.UUID) -> list[tuple[str, int]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT event_type, position FROM webhooks.deliveries WHERE endpoint_id = %s"
            " ORDER BY created_at, position",
            (endpoint_id,),
        )
        return [(r["event_type"], r["position"]) for r in await cur.fetchall()]


async def test_an_event_taken_ahead_of_its_stream_brings_the_earlier_ones_in_order(
    pool: Pool, call_log: CallLog
) -> None:
    org, call_id = f"org_{uuid.uuid4().hex[:8]}", uuid.uuid4()
    endpoint = await new_endpoint(
        pool,
        org,
        "http://127.0.0.1:9/",
        ["call.queued", "call.initiated", "call.answered", "call.ended"],
    )
    stored = await append_call(pool, org, call_id)
    intake = Intake(pool, call_log, ManualClock(T0))
    await intake(stored[2])  # the third arrives first (another consumer holds the first two)
    assert [t for t, _ in await queued(pool, endpoint)] == [
        "call.queued",
        "call.initiated",
        "call.answered",
    ]
    positions = [p for _, p in await queued(pool, endpoint)]
    assert positions == sorted(positions)
    for late in (stored[0], stored[1], stored[2]):  # late and repeated: nothing more
        await intake(late)
    await intake(stored[3])
    await intake(stored[3])
    assert [t for t, _ in await queued(pool, endpoint)] == [
        "call.queued",
        "call.initiated",
        "call.answered",
        "call.ended",
    ]
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payload FROM webhooks.deliveries WHERE endpoint_id = %s LIMIT 1", (endpoint,)
        )
        row = await cur.fetchone()
    assert row is not None
    assert row["payload"]["data"] == {"call_id": str(call_id), "status": "queued"}


async def test_the_view_is_fetched_while_no_transaction_of_the_intake_holds_back_readers(
    db: str, pool: Pool
) -> None:
    """The call log's read waits until its projector has caught up with the event store,
    and a transaction holding an id (the stream's row lock) keeps every event-store reader
    in the cluster waiting: fetched inside it, each view could sit out that whole wait."""
    held: list[int] = []

    async def get_call(request: web.Request) -> web.Response:
        held.append(await holding_ids(db))
        return web.json_response({"call_id": request.match_info["call_id"], "status": "queued"})

    app = web.Application()
    app.router.add_get("/internal/orgs/{org}/calls/{call_id}", get_call)
    server = TestServer(app)
    await server.start_server()
    org, call_id = f"org_{uuid.uuid4().hex[:8]}", uuid.uuid4()
    endpoint = await new_endpoint(pool, org, "http://127.0.0.1:9/", ["call.queued", "call.ended"])
    stored = await append_call(pool, org, call_id)
    try:
        async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as http:
            intake = Intake(pool, CallLog(http), ManualClock(T0))
            for event in stored:
                await intake(event)
    finally:
        await server.close()
    assert held == [0, 0]  # one fetch per message (queued, ended), no transaction id held
    assert [t for t, _ in await queued(pool, endpoint)] == ["call.queued", "call.ended"]
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payload FROM webhooks.deliveries WHERE endpoint_id = %s", (endpoint,)
        )
        payloads = [r["payload"] for r in await cur.fetchall()]
    assert all(p["data"] == {"call_id": str(call_id), "status": "queued"} for p in payloads)


async def test_an_endpoint_created_mid_call_gets_what_happens_after(
    pool: Pool, call_log: CallLog
) -> None:
    org, call_id = f"org_{uuid.uuid4().hex[:8]}", uuid.uuid4()
    minute = timedelta(minutes=1)
    stored = await append_call(pool, org, call_id, at=[T0, T0, T0 + 2 * minute, T0 + 3 * minute])
    intake = Intake(pool, call_log, ManualClock(T0))
    await intake(stored[0])  # no endpoint yet: nothing kept
    await intake(stored[1])
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM webhooks.streams WHERE stream_id = %s",
            (call_stream(call_id),),
        )
        row = await cur.fetchone()
        assert row is not None
        assert row["n"] == 0
        created = await store.create_endpoint(
            conn,
            organization_id=org,
            url="http://127.0.0.1:9/",
            events=["call.queued", "call.initiated", "call.answered", "call.ended"],
            description=None,
            secret_sealed=box().seal(new_secret()),
            now=T0 + minute,
        )
    await intake(stored[3])  # the gap (1 to 3) is filled from the store and folded
    assert [t for t, _ in await queued(pool, created["id"])] == ["call.answered", "call.ended"]


async def test_a_call_s_next_delivery_waits_for_the_previous_one(
    pool: Pool, call_log: CallLog
) -> None:
    org, call_id = f"org_{uuid.uuid4().hex[:8]}", uuid.uuid4()
    endpoint = await new_endpoint(
        pool, org, "http://127.0.0.1:9/", ["call.queued", "call.initiated"]
    )
    stored = await append_call(pool, org, call_id)
    intake = Intake(pool, call_log, ManualClock(T0))
    await intake(stored[1])
    async with pool.connection() as conn:
        # the first is put off (as after a failed attempt): the second is not due before it is
        await conn.execute(
            "UPDATE webhooks.deliveries SET next_attempt_at = %s"
            " WHERE endpoint_id = %s AND event_type = 'call.queued'",
            (T0 + timedelta(minutes=5), endpoint),
        )
        due = [d for d in await store.due(conn, now=T0, limit=1000) if d.endpoint_id == endpoint]
        assert due == []
        due = await store.due(conn, now=T0 + timedelta(minutes=5), limit=1000)
        mine = [d for d in due if d.endpoint_id == endpoint]
        assert len(mine) == 1
        cur = await conn.execute(
            "SELECT event_type FROM webhooks.deliveries WHERE id = %s", (mine[0].id,)
        )
        row = await cur.fetchone()
        assert row is not None
        assert row["event_type"] == "call.queued"
        # given up, it no longer holds the call's next message back
        await conn.execute(
            "UPDATE webhooks.deliveries SET state = 'failed' WHERE id = %s", (mine[0].id,)
        )
        due = await store.due(conn, now=T0, limit=1000)
        assert len([d for d in due if d.endpoint_id == endpoint]) == 1


async def test_an_endpoint_failing_for_a_day_is_disabled_and_says_so(
    pool: Pool, call_log: CallLog
) -> None:
    async def fail(request: web.Request) -> web.Response:
        # a NUL, which a text column cannot hold, must not stop the attempt being recorded
        return web.Response(status=503, text="down for maintenance\x00")

    app = web.Application()
    app.router.add_post("/hook", fail)
    receiver = TestServer(app)
    await receiver.start_server()
    org, call_id = f"org_{uuid.uuid4().hex[:8]}", uuid.uuid4()
    endpoint = await new_endpoint(pool, org, str(receiver.make_url("/hook")), ["call.queued"])
    stored = await append_call(pool, org, call_id)
    clock = ManualClock(T0)
    await Intake(pool, call_log, clock)(stored[0])
    settings = SenderSettings(policy=RetryPolicy(base_seconds=60), disable_after_seconds=86400)
    try:
        async with aiohttp.ClientSession() as http:
            sender = Sender(
                pool, http, box(), call_log, settings, wakeup=asyncio.Event(), clock=clock
            )
            await sender.send_due_now()
            async with pool.connection() as conn:
                row = await store.get_endpoint(conn, org, endpoint)
                assert row is not None
                assert row["enabled"]
                assert row["failing_since"] == T0
                cur = await conn.execute(
                    "SELECT next_attempt_at, attempts FROM webhooks.deliveries"
                    " WHERE endpoint_id = %s",
                    (endpoint,),
                )
                delivery = await cur.fetchone()
            assert delivery is not None
            assert delivery["attempts"] == 1
            # the back-off follows the injected clock: 30 to 60 s after the first attempt
            assert (
                T0 + timedelta(seconds=30)
                <= delivery["next_attempt_at"]
                <= T0 + timedelta(seconds=60)
            )
            clock.now = T0 + timedelta(hours=24, minutes=1)
            await sender.send_due_now()
            async with pool.connection() as conn:
                row = await store.get_endpoint(conn, org, endpoint)
                assert row is not None
                view = store.endpoint_view(row, clock.now)
                items, _ = await store.list_deliveries(
                    conn, endpoint, status=None, event_type=None, call_id=None, page=1, page_size=10
                )
            assert view["enabled"] is False
            assert "failed since" in view["disabled_reason"]
            (item,) = items
            assert item["status"] == "failed"  # its 24 h are up too
            assert [a["response_status"] for a in item["attempts"]] == [503, 503]
            assert item["attempts"][0]["response_body_excerpt"] == "down for maintenance\\u0000"
    finally:
        await receiver.close()


@pytest.fixture(scope="module")
async def api(db: str, amqp_factory: Any) -> AsyncIterator[TestClient[Any, Any]]:
    settings = Settings(
        database_url=db,
        amqp_url=amqp_factory("webhooks"),
        call_log_url="http://127.0.0.1:9",
        allow_private=False,
        migrate_on_start=False,
        # its retention runs on the real clock: it must not delete other tests' deliveries,
        # which are dated in March 2026 (T0)
        delivery_retention_days=36500,
    )
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    yield client
    await client.close()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://hooks.example.com/x", "https"),
        ("https://127.0.0.1/hook", "non-public"),
        ("https://localhost:8443/hook", "non-public"),
        ("https://169.254.169.254/latest/meta-data", "non-public"),
        ("https://[::1]/hook", "non-public"),
        ("https://10.0.0.8/hook", "non-public"),
    ],
)
async def test_a_private_or_plain_http_url_is_refused_with_a_422(
    api: TestClient[Any, Any], url: str, says: str
) -> None:
    org = f"org_{uuid.uuid4().hex[:8]}"
    resp = await api.post(
        f"/internal/orgs/{org}/webhook-endpoints", json={"url": url, "events": ["call.ended"]}
    )
    assert resp.status == 422, await resp.text()
    error = (await resp.json())["error"]
    assert says in error["message"]
    assert error["details"][0]["field"] == "url"
    listed = await api.get(f"/internal/orgs/{org}/webhook-endpoints")
    assert (await listed.json())["items"] == []


async def test_the_service_is_ready_and_serves_metrics(api: TestClient[Any, Any]) -> None:
    assert (await api.get("/healthz")).status == 200
    for _ in range(50):
        if (await api.get("/readyz")).status == 200:
            break
        await asyncio.sleep(0.1)
    assert (await api.get("/readyz")).status == 200
    metrics = await (await api.get("/metrics")).text()
    assert "webhook_delivery_attempts_total" in metrics


async def test_finished_deliveries_older_than_the_retention_are_deleted_with_their_attempts(
    pool: Pool,
) -> None:
    org = f"org_{uuid.uuid4().hex[:8]}"
    endpoint = await new_endpoint(pool, org, "https://example.com/hook", ["call.queued"])
    async with pool.connection() as conn:
        # disabled: the service this module runs (`api`) would otherwise send these
        await store.update_endpoint(conn, org, endpoint, {"enabled": False}, now=T0)
    old, recent = T0 - timedelta(days=40), T0 - timedelta(days=5)
    names: dict[str, str] = {}  # message id: which delivery

    async def delivery(name: str, at: datetime, state: str | None) -> None:
        """A delivery queued at `at` and, unless `state` is None, finished then with it."""
        message = Message(
            id=f"msg_{uuid.uuid4().hex}",
            type="call.queued",
            sequence_key=f"call-{uuid.uuid4()}",
            position=1,
            created_at=at,
            organization_id=org,
        )
        names[message.id] = name
        async with pool.connection() as conn:
            await store.add_deliveries(conn, message, [endpoint], {"status": "queued"}, now=at)
            if state is None:
                return
            cur = await conn.execute(
                "SELECT id FROM webhooks.deliveries WHERE message_id = %s", (message.id,)
            )
            row = await cur.fetchone()
            assert row is not None
            attempt = store.Attempt(at=at, status=200, latency_ms=3, excerpt="ok", error=None)
            await store.record_attempt(
                conn, row["id"], 1, attempt, state=state, next_attempt_at=None, error=None
            )

    await delivery("old_delivered", old, "delivered")
    await delivery("old_failed", old, "failed")
    await delivery("old_pending", old, None)  # never finished: kept however old
    await delivery("recent_delivered", recent, "delivered")

    async def left() -> list[str]:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT message_id FROM webhooks.deliveries WHERE endpoint_id = %s", (endpoint,)
            )
            return sorted(names[r["message_id"]] for r in await cur.fetchall())

    async def attempts() -> int:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM webhooks.attempts a"
                " JOIN webhooks.deliveries d ON d.id = a.delivery_id WHERE d.endpoint_id = %s",
                (endpoint,),
            )
            row = await cur.fetchone()
        assert row is not None
        return int(row["n"])

    assert await attempts() == 3
    # 30 days kept, one row per statement: the loop goes on until nothing is left to delete
    retention = Retention(pool, keep=timedelta(days=30), clock=lambda: T0, chunk=1)
    assert await retention.prune() == 2
    assert await left() == ["old_pending", "recent_delivered"]
    assert await attempts() == 1  # the recent one's; the deleted ones' went with them
    assert await retention.prune() == 0
