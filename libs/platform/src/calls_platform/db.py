"""PostgreSQL connection pools. Every row comes back as a dict."""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Mapping
from typing import Any, TypeAlias

import psycopg
import pydantic_core
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

# JSON and JSONB columns parsed in Rust: a reader of 10,000 events spent ~100 ms in json.loads.
set_json_loads(pydantic_core.from_json)

Conn: TypeAlias = psycopg.AsyncConnection[DictRow]
Pool: TypeAlias = AsyncConnectionPool[Conn]


# A connection handed out this recently is not pinged again: under load a checkout costs no
# extra round trip, while one that sat idle (e.g. across a PostgreSQL restart) is checked.
_RECENTLY_USED_SECONDS = 1.0
_last_checkout: weakref.WeakKeyDictionary[Conn, float] = weakref.WeakKeyDictionary()


async def _check_unless_recently_used(conn: Conn) -> None:
    now = time.monotonic()
    last = _last_checkout.get(conn)
    _last_checkout[conn] = now
    if last is not None and now - last < _RECENTLY_USED_SECONDS:
        return
    await AsyncConnectionPool.check_connection(conn)


def session_options(extra: Mapping[str, str] | None = None) -> str:
    """Settings of every pooled session (libpq `options`).

    idle_in_transaction_session_timeout: a transaction that holds a transaction id and sits
    idle (a bug, a stuck await between two statements) holds back every event-store reader
    in the cluster (see calls_platform.eventstore); PostgreSQL ends it after this long.
    PG_IDLE_IN_TRANSACTION_TIMEOUT, in PostgreSQL units (default 10s; 0 turns it off)."""
    settings = {
        "idle_in_transaction_session_timeout": os.environ.get(
            "PG_IDLE_IN_TRANSACTION_TIMEOUT", "10s"
        ),
        **(extra or {}),
    }
    return " ".join(f"-c {name}={value}" for name, value in settings.items())


async def open_pool(
    url: str,
    *,
    name: str,
    min_size: int = 1,
    max_size: int = 10,
    settings: Mapping[str, str] | None = None,
) -> Pool:
    """Open a pool that checks connections that sat idle before handing them out, so a
    restarted PostgreSQL costs one failed check, not a failed request. `settings` are
    PostgreSQL settings of its sessions (besides `session_options`' own).

    PG_POOL_MAX_SIZE caps `max_size` (every pool of the process: size it to the server's
    max_connections over all replicas); PG_POOL_MAX_IDLE_SECONDS closes connections beyond
    `min_size` that sat unused that long (600 by default)."""
    cap = int(os.environ.get("PG_POOL_MAX_SIZE", "0") or 0)
    if cap > 0:
        max_size = max(min(max_size, cap), min_size)
    pool: Pool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        max_idle=float(os.environ.get("PG_POOL_MAX_IDLE_SECONDS", "600")),
        name=name,
        open=False,
        kwargs={
            "row_factory": dict_row,
            "autocommit": True,
            "options": session_options(settings),
            "application_name": name,  # who holds which connection, in pg_stat_activity
        },
        check=_check_unless_recently_used,
        reconnect_timeout=30,
    )
    await pool.open(wait=False)
    return pool


async def connect(url: str, **kwargs: Any) -> Conn:
    """A single connection outside any pool (LISTEN, leadership locks)."""
    return await psycopg.AsyncConnection.connect(
        url, row_factory=dict_row, autocommit=True, **kwargs
    )


async def is_reachable(pool: Pool) -> bool:
    try:
        async with pool.connection(timeout=2) as conn:
            await conn.execute("SELECT 1")
        return True
    except (psycopg.Error, TimeoutError, Exception):
        return False
