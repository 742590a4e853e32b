"""The internal query API, served by the real app (projector included) on a test database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from call_log.__main__ import create_app
from call_log.config import Settings
from calls_events import CallInitiated, CallRequested, Envelope, call_stream
from calls_platform import eventstore
from calls_platform.db import Pool, open_pool
from calls_testing import new_org_id, wait_until

pytestmark = pytest.mark.integration

Client = TestClient[web.Request, web.Application]


@pytest.fixture(scope="module")
def api_database(database_factory: Callable[[str], str]) -> str:
    return database_factory("calllog_api")


def serve(
    database_url: str, *, migrate_on_start: bool = False, read_your_writes_seconds: float
) -> Client:
    """The call log's API on `database_url`, on an ephemeral port (use it with `async with`)."""
    settings = Settings(
        database_url=database_url,
        port=0,
        log_level="WARNING",
        migrate_on_start=migrate_on_start,
        read_your_writes_seconds=read_your_writes_seconds,
    )
    return TestClient(TestServer(create_app(settings)))


@pytest.fixture(scope="module")
async def client(api_database: str) -> AsyncIterator[Client]:
    async with serve(api_database, migrate_on_start=True, read_your_writes_seconds=5) as client:
        yield client


@pytest.fixture(scope="module")
async def store(api_database: str, client: Client) -> AsyncIterator[Pool]:
    """A writer's pool on the same database (the app has migrated it by now)."""
    pool = await open_pool(api_database, name="test-call-log-writer")
    async with pool:
        yield pool


@pytest.fixture
def org() -> str:
    return new_org_id()


async def request_call(store: Pool, org: str, **fields: Any) -> uuid.UUID:
    call_id = uuid.uuid4()
    event = CallRequested(
        call_id=call_id,
        to_number="+15551230001",
        from_number="+15551230002",
        requested_by="key_1",
        **fields,
    )
    async with store.connection() as conn:
        await eventstore.append(
            conn, [Envelope.wrap(event, stream_id=call_stream(call_id), organization_id=org)]
        )
    return call_id


async def test_a_call_is_readable_right_after_its_request_is_committed(
    client: Client, store: Pool, org: str
) -> None:
    call_id = await request_call(store, org)

    response = await client.get(f"/internal/orgs/{org}/calls/{call_id}")

    assert response.status == 200
    body = await response.json()
    assert (body["call_id"], body["status"], body["outcome"]) == (str(call_id), "queued", None)


async def test_a_read_waits_until_the_projector_has_caught_up(
    client: Client, store: Pool, org: str
) -> None:
    async with store.connection() as blocker, blocker.transaction():
        # the projector takes this row lock for each step: hold it so it falls behind
        await blocker.execute("SELECT 1 FROM call_log.checkpoints FOR UPDATE")
        call_id = await request_call(store, org)
        read = asyncio.create_task(client.get(f"/internal/orgs/{org}/calls/{call_id}"))
        await asyncio.sleep(0.3)  # a read that did not wait would have its 404 by now

    response = await read

    assert response.status == 200


async def test_a_row_missing_while_the_projection_is_behind_is_a_retry_not_a_404(
    api_database: str, store: Pool, org: str
) -> None:
    async with serve(api_database, read_your_writes_seconds=0.2) as impatient:
        async with store.connection() as blocker, blocker.transaction():
            await blocker.execute("SELECT 1 FROM call_log.checkpoints FOR UPDATE")
            call_id = await request_call(store, org)
            behind = await impatient.get(f"/internal/orgs/{org}/calls/{call_id}")
            batch = await impatient.get(f"/internal/orgs/{org}/batches/batch-{uuid.uuid4().hex}")
        for response in (behind, batch):
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            assert (await response.json())["error"]["code"] == "catching_up"

        async def readable() -> bool:
            return (await impatient.get(f"/internal/orgs/{org}/calls/{call_id}")).status == 200

        await wait_until(readable, what="the call readable once the projector runs")
        # caught up: an id nobody accepted is a plain 404
        unknown = await impatient.get(f"/internal/orgs/{org}/calls/{uuid.uuid4()}")
        assert unknown.status == 404


async def test_the_latest_event_is_visible_in_the_next_read(
    client: Client, store: Pool, org: str
) -> None:
    call_id = await request_call(store, org)
    async with store.connection() as conn:
        await eventstore.append(
            conn,
            [
                Envelope.wrap(
                    CallInitiated(call_id=call_id, call_sid="CA" + call_id.hex),
                    stream_id=call_stream(call_id),
                    organization_id=org,
                )
            ],
        )

    listed = await (await client.get(f"/internal/orgs/{org}/calls")).json()

    assert [(c["call_id"], c["status"]) for c in listed["items"]] == [(str(call_id), "in-progress")]
    assert listed["total"] == 1


async def test_list_returns_a_page(client: Client, store: Pool, org: str) -> None:
    agent = uuid.uuid4()
    ids = [await request_call(store, org, agent_id=agent) for _ in range(3)]

    response = await client.get(
        f"/internal/orgs/{org}/calls",
        params={"page": "2", "page_size": "2", "agent_id": str(agent), "status": "queued"},
    )

    assert response.status == 200
    body = await response.json()
    assert (body["total"], body["page"], body["page_size"], len(body["items"])) == (3, 2, 2, 1)
    assert body["items"][0]["call_id"] in {str(i) for i in ids}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": "0"}, "page"),
        ({"page": "abc"}, "page"),
        ({"page_size": "101"}, "page_size"),
        ({"page_size": "0"}, "page_size"),
        ({"direction": "sideways"}, "direction"),
        ({"status": "bogus"}, "status"),
        ({"agent_id": "not-a-uuid"}, "agent_id"),
        ({"from": "yesterday"}, "from"),
        ({"search": "x" * 33}, "search"),
    ],
)
async def test_invalid_query_parameters_are_a_422_naming_the_field(
    client: Client, org: str, params: dict[str, str], field: str
) -> None:
    response = await client.get(f"/internal/orgs/{org}/calls", params=params)

    assert response.status == 422
    assert response.content_type == "application/json"
    error = (await response.json())["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == [field]


@pytest.mark.parametrize("call_id", [str(uuid.uuid4()), "not-a-uuid", "1234"])
async def test_an_unknown_or_malformed_call_id_is_a_404(
    client: Client, org: str, call_id: str
) -> None:
    response = await client.get(f"/internal/orgs/{org}/calls/{call_id}")

    assert response.status == 404
    assert await response.json() == {"error": {"code": "not_found", "message": "call not found"}}


async def test_another_organizations_call_is_a_404(client: Client, store: Pool, org: str) -> None:
    call_id = await request_call(store, org)

    response = await client.get(f"/internal/orgs/{org}_other/calls/{call_id}")

    assert response.status == 404


async def test_an_unknown_batch_is_a_404(client: Client, org: str) -> None:
    response = await client.get(f"/internal/orgs/{org}/batches/batch-{uuid.uuid4().hex}")

    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


async def test_readiness_checks_the_database(client: Client) -> None:
    response = await client.get("/readyz")

    assert response.status == 200
    assert await response.json() == {"status": "ready", "checks": {"database": True}}
