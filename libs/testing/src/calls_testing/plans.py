"""The plans PostgreSQL caches, for tests of statements that run often on growing tables.

psycopg prepares a statement after a few executions, and PostgreSQL may then keep one generic
plan for it, made without the parameters' values; a plan made while a table was small or had
no statistics stays cached as it grows. A periodic query whose generic plan scans a whole
table costs more every day (the readers' lag count did: 71 ms a second at 500,000 events)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

_NAMED = re.compile(r"%\((\w+)\)s")

Mode = Literal["force_generic_plan", "force_custom_plan"]


async def plan(
    conn: psycopg.AsyncConnection[Any],
    statement: str,
    parameters: Mapping[str, Any],
    mode: Mode = "force_generic_plan",
) -> str:
    """EXPLAIN's text for `statement` (with psycopg's %(name)s placeholders) as PostgreSQL
    plans it prepared, under `mode`: the generic plan it may cache, or the custom plan for
    `parameters`."""
    names = list(dict.fromkeys(_NAMED.findall(statement)))
    numbered = _NAMED.sub(lambda m: f"${names.index(m.group(1)) + 1}", statement)
    values = sql.SQL(", ").join(sql.Literal(parameters[name]) for name in names)
    types = ", ".join(_type_of(parameters[name]) for name in names)
    await conn.execute(sql.SQL("SET plan_cache_mode = {}").format(sql.SQL(mode)))
    await conn.execute(
        sql.SQL("PREPARE plan_probe {} AS {}").format(
            sql.SQL(f"({types})" if names else ""), sql.SQL(numbered)
        )
    )
    try:
        async with conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(
                sql.SQL("EXPLAIN EXECUTE plan_probe {}").format(
                    sql.SQL("({})").format(values) if names else sql.SQL("")
                )
            )
            return "\n".join(str(row[0]) for row in await cur.fetchall())
    finally:
        await conn.execute("DEALLOCATE plan_probe")
        await conn.execute("RESET plan_cache_mode")


_TYPES: dict[type, str] = {
    bool: "boolean",
    int: "bigint",
    float: "double precision",
    str: "text",
    uuid.UUID: "uuid",
    datetime: "timestamptz",
}


def _type_of(value: Any) -> str:
    """The parameter type psycopg would send `value` as, near enough for planning."""
    if isinstance(value, list):
        return (_type_of(value[0]) if value else "text") + "[]"
    return _TYPES[type(value)]


def scans(shown: str) -> list[str]:
    """The sequential scans in a plan, by table (`Seq Scan on events` → `events`)."""
    return re.findall(r"Seq Scan on (\w+)", shown)
