"""What PostgreSQL says about open transactions, for tests of the event store's ordering rule:
a transaction that holds an id anywhere in the cluster holds back every event-store reader
(see calls_platform.eventstore), so work that waits on the network must hold none."""

from __future__ import annotations

import psycopg


async def holding_ids(database_url: str) -> int:
    """How many other sessions of `database_url`'s database are in a transaction that holds
    a transaction id right now."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
        )
        row = await cur.fetchone()
    return int(row[0]) if row else -1
