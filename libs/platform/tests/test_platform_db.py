"""Integration: the connection pool hands out working connections after the server dropped
them, without pinging connections that are in constant use."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
import pytest
from calls_platform import db

pytestmark = pytest.mark.integration


async def backend_pid(pool: db.Pool) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT pg_backend_pid() AS pid")
        row = await cur.fetchone()
        assert row is not None
        return int(row["pid"])


async def drop_the_connection(url: str, pool: db.Pool) -> int:
    """Terminates, from the server side, the pool's one connection; returns its backend pid."""
    await pool.wait()
    first = await backend_pid(pool)
    async with await db.connect(url) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    return first


async def test_a_connection_dropped_while_idle_is_replaced_not_handed_out(
    database_factory: Callable[[str], str],
) -> None:
    url = database_factory("pool")
    pool = await db.open_pool(url, name="test-pool", max_size=1)
    async with pool:
        first = await drop_the_connection(url, pool)
        await asyncio.sleep(1.2)  # idle longer than a connection in constant use ever is
        assert await backend_pid(pool) != first


async def test_a_connection_in_constant_use_is_not_pinged_before_each_checkout(
    database_factory: Callable[[str], str],
) -> None:
    """The trade-off, shown: no round trip per checkout under load, so a connection dropped
    within a second of its last use fails the one request that gets it; the pool then replaces
    it."""
    url = database_factory("pool")
    pool = await db.open_pool(url, name="test-pool", max_size=1)
    async with pool:
        first = await drop_the_connection(url, pool)
        with pytest.raises(psycopg.OperationalError):
            await backend_pid(pool)
        assert await backend_pid(pool) != first
