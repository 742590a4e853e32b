"""Composition root of the recordings service (call audio).

For now it only runs its operational endpoints; capturing, storing and serving recordings is
tracked in the recordings issue.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping

from aiohttp import web
from calls_platform.db import Pool, is_reachable, open_pool
from calls_platform.http import new_app
from calls_platform.logging import configure_logging

POOL: web.AppKey[Pool] = web.AppKey("pool")


def create_app(database_url: str) -> web.Application:
    async def readiness() -> Mapping[str, bool]:
        return {"database": await is_reachable(app[POOL])}

    app = new_app(readiness=readiness)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await open_pool(database_url, name="recordings", max_size=2)
        yield
        await app[POOL].close()

    app.cleanup_ctx.append(resources)
    return app


def main() -> None:
    env = os.environ
    configure_logging("recordings", json_logs=env.get("LOG_FORMAT") == "json")
    web.run_app(
        create_app(env.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/calls")),
        host=env.get("RECORDINGS_HOST", "127.0.0.1"),
        port=int(env.get("RECORDINGS_PORT", "8083")),
        access_log=None,
        print=None,
        shutdown_timeout=20,
    )


if __name__ == "__main__":
    main()
