"""The operator's commands (`python -m webhooks admin …`, run by `callsctl webhooks`): every
organization's endpoints, the backlog per endpoint, and sending a delivery again. Each prints
one JSON document."""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from calls_platform.db import open_pool

from . import store


async def run(database_url: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m webhooks admin")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("endpoints", help="every organization's webhook endpoints")
    commands.add_parser("backlog", help="pending deliveries and the oldest one's age, per endpoint")
    again = commands.add_parser("redeliver", help="send a delivery again")
    again.add_argument("delivery_id", type=uuid.UUID)
    args = parser.parse_args(argv)
    now = datetime.now(UTC)
    pool = await open_pool(database_url, name="webhooks-admin", max_size=1)
    out: Any
    async with pool, pool.connection() as conn:
        if args.command == "endpoints":
            cur = await conn.execute(
                "SELECT organization_id, id FROM webhooks.endpoints ORDER BY organization_id,"
                " created_at"
            )
            out = []
            for row in await cur.fetchall():
                endpoint = await store.get_endpoint(conn, row["organization_id"], row["id"])
                if endpoint is not None:
                    view = store.endpoint_view(endpoint, now)
                    out.append({"organization_id": row["organization_id"], **view})
        elif args.command == "backlog":
            out = [
                {
                    "endpoint_id": str(row["endpoint_id"]),
                    "organization_id": row["organization_id"],
                    "url": row["url"],
                    "enabled": row["enabled"],
                    "pending": row["pending"],
                    "oldest_pending_age_seconds": round(row["oldest_age_seconds"], 1),
                }
                for row in await store.backlog(conn, now)
            ]
        else:
            cur = await conn.execute(
                "SELECT endpoint_id FROM webhooks.deliveries WHERE id = %s", (args.delivery_id,)
            )
            found = await cur.fetchone()
            if found is None:
                raise SystemExit(f"no delivery {args.delivery_id}")
            await store.redeliver(conn, found["endpoint_id"], args.delivery_id, now=now)
            out = await store.get_delivery(conn, found["endpoint_id"], args.delivery_id)
    print(json.dumps(out, default=str))
