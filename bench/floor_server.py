"""The floor for `POST /calls`: a bare aiohttp handler doing one equivalent INSERT — an
event-sized JSONB row into a copy of `eventstore.events` (same columns, constraints and
indexes) — in the same PostgreSQL, through the same kind of pool the services use.

No authentication, validation, caller-ID lookup, advisory lock or version check: what the
stack (aiohttp + psycopg + PostgreSQL on this machine) does at best for one durable row per
request. `POST /calls` divided by this is the share of the stack's own limit the gateway gets.

    python bench/floor_server.py --database-url postgresql://… --port 19290
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import web
from calls_platform.db import Pool, open_pool

SETUP = """
CREATE SCHEMA IF NOT EXISTS bench_floor;
CREATE TABLE IF NOT EXISTS bench_floor.events (LIKE eventstore.events INCLUDING ALL);
CREATE SEQUENCE IF NOT EXISTS bench_floor.positions OWNED BY bench_floor.events.position;
ALTER TABLE bench_floor.events ALTER position SET DEFAULT nextval('bench_floor.positions');
"""

INSERT = (
    "INSERT INTO bench_floor.events (event_id, stream_id, stream_version, event_type,"
    " event_version, organization_id, occurred_at, correlation_id, data)"
    " VALUES (%s, %s, 1, 'CallRequested', 1, %s, %s, %s, %s::jsonb)"
)

POOL = web.AppKey("pool", Pool)


async def place_call(request: web.Request) -> web.Response:
    body = await request.json()
    call_id = uuid.uuid4()
    data = {  # the shape and size of a CallRequested event's data
        "call_id": str(call_id),
        "to_number": body["to_number"],
        "from_number": body.get("from_number"),
        "agent_id": None,
        "agent_name": None,
        "batch_id": None,
        "batch_index": None,
        "record": True,
        "requested_by": "bench",
    }
    async with request.app[POOL].connection() as conn:
        await conn.execute(
            INSERT,
            (
                uuid.uuid4(),
                f"call-{call_id}",
                "org_load",
                datetime.now(UTC),
                uuid.uuid4().hex,
                json.dumps(data),
            ),
        )
    return web.json_response(
        {"call_id": str(call_id), "call_sid": f"queued-{call_id.hex[:12]}", "status": "queued"},
        status=202,
    )


async def readyz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pool-size", type=int, default=20, help="the gateway's pool size")
    args = parser.parse_args()

    async def pool_context(app: web.Application) -> AsyncIterator[None]:
        pool = await open_pool(args.database_url, name="floor", max_size=args.pool_size)
        await pool.wait()
        async with pool.connection() as conn:
            await conn.execute(SETUP)
        app[POOL] = pool
        yield
        await pool.close()

    app = web.Application()
    app.cleanup_ctx.append(pool_context)
    app.router.add_post("/calls", place_call)
    app.router.add_get("/readyz", readyz)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
