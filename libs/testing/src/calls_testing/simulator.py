"""The carrier simulator in-process, on a free port, with its control client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp.test_utils import TestServer
from carrier_sim import SimConfig, SimulatorClient, create_app

from calls_testing.serving import served


class LocalSimulator(SimulatorClient):
    """A simulator running in this process: its control client, plus its config and server."""

    def __init__(
        self, session: aiohttp.ClientSession, server: TestServer, config: SimConfig
    ) -> None:
        super().__init__(
            session,
            str(server.make_url("")),
            account_sid=config.account_sid,
            auth_token=config.auth_token,
        )
        self.server = server
        self.config = config


@asynccontextmanager
async def local_simulator(config: SimConfig | None = None) -> AsyncIterator[LocalSimulator]:
    """Serve the simulator with `config` until exit. Open it after the receiver of its
    callbacks, so that its play-outs stop before the receiver goes away."""
    config = config or SimConfig()
    async with served(create_app(config)) as server, aiohttp.ClientSession() as session:
        yield LocalSimulator(session, server, config)
