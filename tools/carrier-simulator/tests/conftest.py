"""Fixtures: the simulator on an ephemeral port, a webhook receiver (both from calls_testing)
and a real twilio Client.

twilio 9.x's ``AsyncTwilioHttpClient`` passes ``auth=aiohttp.BasicAuth(...)``, which aiohttp 3.14
deprecates; the tests in this directory ignore exactly those two DeprecationWarnings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from calls_testing.receiver import Received, Receiver, webhook_receiver
from calls_testing.simulator import LocalSimulator, local_simulator
from carrier_sim import SimConfig
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


class Sim(LocalSimulator):
    """The running simulator, plus the check of a webhook's signature."""

    def signature_ok(self, request: Received) -> bool:
        validator = RequestValidator(self.config.auth_token)
        params = request.params if request.method == "POST" else {}
        return bool(validator.validate(request.url, params, request.signature))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            for spec in TWILIO_CLIENT_WARNINGS:
                item.add_marker(pytest.mark.filterwarnings(spec))


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(ring_seconds=RING_SECONDS, talk_seconds=TALK_SECONDS)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
async def sim(sim_config: SimConfig, receiver: Receiver) -> AsyncIterator[Sim]:
    # depends on ``receiver`` so that play-outs stop before the receiver goes away
    async with local_simulator(sim_config) as local:
        yield Sim(local.session, local.server, local.config)


@pytest.fixture
async def twilio(sim: Sim) -> AsyncIterator[Client]:
    http_client = AsyncTwilioHttpClient()
    client = Client(sim.config.account_sid, sim.config.auth_token, http_client=http_client)
    client.api.base_url = sim.url
    try:
        yield client
    finally:
        await http_client.close()


Dial = Callable[..., Awaitable[Any]]
"""The `dial` fixture: `await dial(to, **create_kwargs)` creates a call (a CallInstance)."""
ALL_EVENTS = ["initiated", "ringing", "answered", "completed"]
FROM_NUMBER = "+15017122661"


@pytest.fixture
def dial(twilio: Client, receiver: Receiver) -> Dial:
    """``await dial(to, **create_kwargs)``: create a call with status callbacks to ``receiver``."""

    async def _dial(to: str = "+14155551212", **kwargs: Any) -> Any:
        kwargs.setdefault("status_callback", f"{receiver.url}/status")
        kwargs.setdefault("status_callback_event", ALL_EVENTS)
        kwargs.setdefault("url", "https://example.com/twiml")
        return await twilio.calls.create_async(to=to, from_=FROM_NUMBER, **kwargs)

    return _dial
