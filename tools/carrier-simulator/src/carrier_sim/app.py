"""Composition root: :func:`create_app` wires config, store, play-out manager and routes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from carrier_sim.api import CONFIG_KEY, PLAYOUT_KEY, STORE_KEY, add_routes, twilio_middleware
from carrier_sim.config import SimConfig
from carrier_sim.playout import PlayoutManager
from carrier_sim.store import CallStore


def create_app(config: SimConfig) -> web.Application:
    """Build the simulator application (start it with ``web.run_app`` or an ``AppRunner``)."""
    app = web.Application(middlewares=[twilio_middleware])
    store = CallStore()
    playout = PlayoutManager(config, store)
    app[CONFIG_KEY] = config
    app[STORE_KEY] = store
    app[PLAYOUT_KEY] = playout

    async def playout_lifecycle(app: web.Application) -> AsyncIterator[None]:
        await playout.start()
        yield
        await playout.close()

    app.cleanup_ctx.append(playout_lifecycle)
    add_routes(app)
    return app
