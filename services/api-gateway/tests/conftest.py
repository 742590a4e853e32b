"""Fixtures: the real gateway and the real call log, in-process on ephemeral ports, sharing one
private test database (the event store) and the test RabbitMQ vhost.

Tests isolate from each other by organization id (a fresh one per test) and by phone number
(a session-wide counter), so the two servers are started once per session. Test modules cannot
import this file (pytest's importlib mode), so they reach everything through the fixtures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import call_log.__main__ as call_log_main
import pytest
from aiohttp.test_utils import TestClient, TestServer
from call_log.config import Settings as CallLogSettings
from calls_events import Envelope
from calls_platform import eventstore
from calls_platform.db import Pool, open_pool
from calls_testing import new_org_id
from gateway.__main__ import create_app, migrate
from gateway.auth import issue_token
from gateway.config import Settings
from twilio.request_validator import RequestValidator
from yarl import URL

JWT_SECRET = "gateway-tests-" + secrets.token_hex(24)  # >= 32 bytes: PyJWT warns on short keys
TWILIO_ACCOUNT_SID = "AC" + secrets.token_hex(16)
TWILIO_AUTH_TOKEN = secrets.token_hex(16)
# Deliberately not the test server's address: signatures are checked against the public URL.
PUBLIC_BASE_URL = "https://gateway.example.test"
MAX_BATCH_SIZE = 25
MAX_BODY_BYTES = 16 * 1024

_numbers = itertools.count(2_025_550_000)


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """A gateway with `settings`, on an ephemeral port, while the block runs."""
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(settings), host="127.0.0.1", port=0)
    )
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


@dataclass(frozen=True)
class Gateway:
    """The running gateway, its settings, and direct access to its event store."""

    client: TestClient[Any, Any]
    settings: Settings
    pool: Pool

    @staticmethod
    def number() -> str:
        """A valid E.164 number not used before in this session (agent numbers are unique)."""
        return f"+1{next(_numbers)}"

    def another(
        self, **changes: Any
    ) -> contextlib.AbstractAsyncContextManager[TestClient[Any, Any]]:
        """A second gateway on the same database, with `changes` to its settings."""
        return serve(dataclasses.replace(self.settings, **changes))

    def token(self, org: str, subject: str = "tester") -> str:
        return issue_token(
            self.settings.jwt_secret, organization_id=org, subject=subject, ttl_seconds=300
        )

    def auth(self, org: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(org)}"}

    async def head(self) -> eventstore.Checkpoint:
        async with self.pool.connection() as conn:
            return await eventstore.head(conn)

    async def events_after(self, checkpoint: eventstore.Checkpoint | int) -> list[Envelope]:
        """Every event committed after `checkpoint` (waiting until older transactions end)."""
        async with self.pool.connection() as conn:
            assert await eventstore.wait_readable(conn)
            return await eventstore.read_all(conn, after=checkpoint, limit=100_000)

    async def stream(self, stream_id: str) -> list[Envelope]:
        async with self.pool.connection() as conn:
            return await eventstore.read_stream(conn, stream_id)

    async def post_json(self, path: str, org: str, body: Any) -> aiohttp.ClientResponse:
        return await self.client.post(path, json=body, headers=self.auth(org))

    async def get(self, path: str, org: str) -> aiohttp.ClientResponse:
        return await self.client.get(path, headers=self.auth(org))

    async def place_call(self, org: str) -> str:
        """POST /calls between two fresh numbers as `org`; the new call's id."""
        response = await self.post_json(
            "/calls", org, {"to_number": self.number(), "from_number": self.number()}
        )
        assert response.status == 202
        call_id: str = (await response.json())["call_id"]
        return call_id

    def signed(self, path_qs: str, params: Mapping[str, Any]) -> dict[str, str]:
        """Headers Twilio would send: a signature over the public URL and the form params."""
        url = self.settings.public_base_url + path_qs
        signature = RequestValidator(self.settings.twilio_auth_token).compute_signature(url, params)
        return {"X-Twilio-Signature": signature}

    async def deliver(
        self, path: str, params: Any, headers: dict[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        """POST a carrier callback's form to `path` byte for byte (no client-side re-encoding
        of the query), signed as Twilio signs it unless `headers` are given."""
        if headers is None:
            headers = self.signed(path, params)
        return await self.client.post(URL(path, encoded=True), data=params, headers=headers)


@pytest.fixture(scope="session")
async def gateway(database_factory: Callable[[str], str], amqp_url: str) -> AsyncIterator[Gateway]:
    database_url = database_factory("gateway")
    await migrate(database_url)
    await call_log_main.migrate(database_url)
    call_log_server = TestServer(
        call_log_main.create_app(
            CallLogSettings(
                database_url=database_url,
                port=0,
                log_level="WARNING",
                migrate_on_start=False,
                read_your_writes_seconds=5.0,
            )
        ),
        host="127.0.0.1",
        port=0,
    )
    await call_log_server.start_server()
    # The recordings service is not run here (its end-to-end tests run it): a port that refuses
    # connections stands in for it being down.
    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))
    settings = Settings(
        database_url=database_url,
        amqp_url=amqp_url,
        host="127.0.0.1",
        port=0,
        public_base_url=PUBLIC_BASE_URL,
        jwt_secret=JWT_SECRET,
        twilio_account_sid=TWILIO_ACCOUNT_SID,
        twilio_auth_token=TWILIO_AUTH_TOKEN,
        call_log_url=str(call_log_server.make_url("")).rstrip("/"),
        max_batch_size=MAX_BATCH_SIZE,
        max_body_bytes=MAX_BODY_BYTES,
        json_logs=False,
        log_level="WARNING",
        migrate_on_start=False,
        recordings_url=f"http://127.0.0.1:{refusing.getsockname()[1]}",
    )
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(settings), host="127.0.0.1", port=0)
    )
    await client.start_server()
    pool = await open_pool(database_url, name="gateway-tests", max_size=4)
    await pool.wait()
    try:
        yield Gateway(client=client, settings=settings, pool=pool)
    finally:
        await pool.close()
        await client.close()
        await call_log_server.close()
        refusing.close()


@pytest.fixture
def org() -> str:
    return new_org_id()


@pytest.fixture
def other_org() -> str:
    return new_org_id()
