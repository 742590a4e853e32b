"""Forward-only migrations: applied once, in order, safely from several replicas at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from calls_platform import db
from calls_platform.migrate import apply_migrations, migrate_event_store

pytestmark = pytest.mark.integration


async def test_second_run_applies_nothing(database_factory: Callable[[str], str]) -> None:
    conn = await db.connect(database_factory("migrate"))
    async with conn:
        first = await migrate_event_store(conn)
        second = await migrate_event_store(conn)
        cur = await conn.execute("SELECT name FROM eventstore.schema_migrations")
        recorded = [row["name"] for row in await cur.fetchall()]

    assert first == ["0001_events.sql", "0002_commit_order.sql"]
    assert second == []
    assert recorded == first


async def test_concurrent_runs_apply_each_migration_once(
    database_factory: Callable[[str], str],
) -> None:
    url = database_factory("migrate")
    conns = [await db.connect(url) for _ in range(3)]
    try:
        results = await asyncio.gather(
            *(
                apply_migrations(c, "eventstore", "calls_platform", "migrations/eventstore")
                for c in conns
            )
        )
    finally:
        for conn in conns:
            await conn.close()

    assert sorted(results) == [[], [], ["0001_events.sql", "0002_commit_order.sql"]]


def migrations_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, files: dict[str, str]
) -> Path:
    """An importable package `name` under tmp_path with `files` in its migrations folder."""
    package = tmp_path / name
    (package / "migrations").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for filename, sql in files.items():
        (package / "migrations" / filename).write_text(sql)
    monkeypatch.syspath_prepend(str(tmp_path))
    return package


async def test_only_new_migrations_are_applied_in_name_order(
    database_factory: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    package = migrations_package(
        tmp_path,
        monkeypatch,
        "scratch_migrations_pkg",
        {
            "0001_items.sql": "CREATE TABLE scratch.items (id int PRIMARY KEY, label text);"
            " INSERT INTO scratch.items (id) VALUES (1);"
        },
    )
    conn = await db.connect(database_factory("migrate"))
    async with conn:
        first = await apply_migrations(conn, "scratch", "scratch_migrations_pkg", "migrations")
        (package / "migrations" / "0003_more.sql").write_text(
            "INSERT INTO scratch.items (id, label) VALUES (3, 'x');"
        )
        (package / "migrations" / "0002_label.sql").write_text(
            "UPDATE scratch.items SET label = 'one'; ALTER TABLE scratch.items"
            " ALTER COLUMN label SET NOT NULL;"
        )
        (package / "migrations" / "README.md").write_text("not a migration")
        second = await apply_migrations(conn, "scratch", "scratch_migrations_pkg", "migrations")
        cur = await conn.execute("SELECT id, label FROM scratch.items ORDER BY id")
        rows = await cur.fetchall()

    assert first == ["0001_items.sql"]
    assert second == ["0002_label.sql", "0003_more.sql"]
    assert rows == [{"id": 1, "label": "one"}, {"id": 3, "label": "x"}]


async def test_a_failing_migration_applies_nothing_of_its_run(
    database_factory: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    migrations_package(
        tmp_path,
        monkeypatch,
        "scratch_broken_migrations_pkg",
        {
            "0001_ok.sql": "CREATE TABLE broken.ok (id int);",
            "0002_bad.sql": "SELECT no_such_function();",
        },
    )
    conn = await db.connect(database_factory("migrate"))
    async with conn:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            await apply_migrations(conn, "broken", "scratch_broken_migrations_pkg", "migrations")
        cur = await conn.execute("SELECT to_regclass('broken.ok') AS ok")
        row = await cur.fetchone()

    assert row == {"ok": None}
