"""Fixtures: the simulator on an ephemeral port, a webhook receiver and a real twilio Client.

twilio 9.x's ``AsyncTwilioHttpClient`` passes ``auth=aiohttp.BasicAuth(...)``, which aiohttp 3.14
deprecates; the tests in this directory ignore exactly those two DeprecationWarnings.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from carrier_sim import SimConfig, create_app
from multidict import MultiDict
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

_HERE = Path(__file__).parent
TWILIO_CLIENT_WARNINGS = (
    "ignore:BasicAuth is deprecated:DeprecationWarning",
    "ignore:The 'auth' parameter is deprecated:DeprecationWarning",
)
RING_SECONDS = 0.05
TALK_SECONDS = 0.15


@dataclass
class Received:
    """One webhook request as the receiver saw it."""

    path: str
    method: str
    url: str
    params: MultiDict[str]
    signature: str

    def __getitem__(self, key: str) -> str:
        return self.params[key]

    def get(self, key: str) -> str | None:
        return self.params.get(key)


@dataclass
class Receiver:
    """Collects webhooks; ``url`` is its base URL (no trailing slash)."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    status: int = 204

    def for_call(self, call_sid: str, path: str = "/status") -> list[Received]:
        return [r for r in self.requests if r.path == path and r.get("CallSid") == call_sid]

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], within: float = 5.0
    ) -> list[Received]:
        deadline = time.monotonic() + within
        while not predicate(self.requests):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; received: {self.requests}")
            await asyncio.sleep(0.01)
        return self.requests

    async def wait_status(self, call_sid: str, status: str, within: float = 5.0) -> Received:
        await self.wait_for(
            lambda _: any(r["CallStatus"] == status for r in self.for_call(call_sid)), within
        )
        return next(r for r in self.for_call(call_sid) if r["CallStatus"] == status)


@dataclass
class Sim:
    """The running simulator, plus helpers for its control API and signature checks."""

    url: str
    config: SimConfig
    server: TestServer
    session: aiohttp.ClientSession

    @property
    def account_uri(self) -> str:
        return f"{self.url}/2010-04-01/Accounts/{self.config.account_sid}"

    @staticmethod
    def basic(login: str, password: str) -> dict[str, str]:
        """An Authorization header (aiohttp 3.14 deprecates ``BasicAuth`` objects)."""
        token = base64.b64encode(f"{login}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    @property
    def auth(self) -> dict[str, str]:
        return self.basic(self.config.account_sid, self.config.auth_token)

    def signature_ok(self, request: Received) -> bool:
        validator = RequestValidator(self.config.auth_token)
        params = request.params if request.method == "POST" else {}
        return bool(validator.validate(request.url, params, request.signature))

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        """Call the /_sim control API and return its JSON."""
        async with self.session.request(method, f"{self.url}{path}", json=body) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def calls(self) -> Any:
        return await self.control("GET", "/_sim/calls")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            for spec in TWILIO_CLIENT_WARNINGS:
                item.add_marker(pytest.mark.filterwarnings(spec))


@pytest.fixture(autouse=True)
def _no_twilio_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    monkeypatch.delenv("TWILIO_REGION", raising=False)


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(ring_seconds=RING_SECONDS, talk_seconds=TALK_SECONDS)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def record(request: web.Request) -> web.Response:
        if request.method == "POST":
            form = await request.post()
            params: MultiDict[str] = MultiDict(
                (k, v) for k, v in form.items() if isinstance(v, str)
            )
        else:
            params = MultiDict(request.query)
        state.requests.append(
            Received(
                path=request.path,
                method=request.method,
                url=f"{state.url}{request.raw_path}",
                params=params,
                signature=request.headers.get("X-Twilio-Signature", ""),
            )
        )
        return web.Response(status=state.status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    state.url = str(server.make_url("")).rstrip("/")
    try:
        yield state
    finally:
        await server.close()


@pytest.fixture
async def sim(sim_config: SimConfig, receiver: Receiver) -> AsyncIterator[Sim]:
    # depends on ``receiver`` so that play-outs stop before the receiver goes away
    server = TestServer(create_app(sim_config), host="127.0.0.1", port=0)
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    try:
        async with aiohttp.ClientSession() as session:
            yield Sim(url=url, config=sim_config, server=server, session=session)
    finally:
        await server.close()


@pytest.fixture
async def twilio(sim: Sim) -> AsyncIterator[Client]:
    http_client = AsyncTwilioHttpClient()
    client = Client(sim.config.account_sid, sim.config.auth_token, http_client=http_client)
    client.api.base_url = sim.url
    try:
        yield client
    finally:
        await http_client.close()


ALL_EVENTS = ["initiated", "ringing", "answered", "completed"]
FROM_NUMBER = "+15017122661"


@pytest.fixture
def dial(twilio: Client, receiver: Receiver) -> Callable[..., Any]:
    """``await dial(to, **create_kwargs)``: create a call with status callbacks to ``receiver``."""

    async def _dial(to: str = "+14155551212", **kwargs: Any) -> Any:
        kwargs.setdefault("status_callback", f"{receiver.url}/status")
        kwargs.setdefault("status_callback_event", ALL_EVENTS)
        kwargs.setdefault("url", "https://example.com/twiml")
        return await twilio.calls.create_async(to=to, from_=FROM_NUMBER, **kwargs)

    return _dial
