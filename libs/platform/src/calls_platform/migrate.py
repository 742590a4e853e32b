"""Forward-only SQL migrations, one schema per owner, applied under an advisory lock.

Each owner (a service, or the event store) keeps numbered `NNNN_name.sql` files in a package
directory and applies them to its own PostgreSQL schema. Applying is idempotent and safe to
run from several replicas at once.
"""

from __future__ import annotations

import zlib
from importlib.resources import files
from importlib.resources.abc import Traversable

import structlog

from . import topology
from .db import Conn, open_pool

log = structlog.get_logger(__name__)


def _migration_files(package: str, directory: str) -> list[Traversable]:
    root = files(package).joinpath(directory)
    return sorted(
        (f for f in root.iterdir() if f.name.endswith(".sql")),
        key=lambda f: f.name,
    )


async def apply_migrations(conn: Conn, schema: str, package: str, directory: str) -> list[str]:
    """Apply the not-yet-applied migrations of `schema`; return the names applied now."""
    applied_now: list[str] = []
    lock_key = zlib.crc32(f"migrations:{schema}".encode())
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute(f'SELECT name FROM "{schema}".schema_migrations')
        done = {row["name"] for row in await cur.fetchall()}
        for migration in _migration_files(package, directory):
            if migration.name in done:
                continue
            await conn.execute(migration.read_text().encode())
            await conn.execute(
                f'INSERT INTO "{schema}".schema_migrations (name) VALUES (%s)', (migration.name,)
            )
            applied_now.append(migration.name)
    if applied_now:
        log.info("migrations_applied", schema=schema, migrations=applied_now)
    return applied_now


async def migrate_event_store(conn: Conn) -> list[str]:
    return await apply_migrations(conn, "eventstore", "calls_platform", "migrations/eventstore")


async def migrate_service(
    database_url: str, schema: str, *, package: str | None = None, amqp_url: str | None = None
) -> None:
    """What `python -m <service> migrate` does: the event store's migrations, the service's
    own schema's (`<package>/migrations`, package defaulting to the schema's name) and, given
    `amqp_url`, the whole RabbitMQ topology (calls_platform.topology). All idempotent."""
    pool = await open_pool(database_url, name=f"{schema}-migrate", max_size=1)
    async with pool, pool.connection() as conn:
        await migrate_event_store(conn)
        await apply_migrations(conn, schema, package or schema, "migrations")
    if amqp_url is not None:
        await topology.declare_on(amqp_url)
