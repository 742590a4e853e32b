"""Serving in-process what a test talks to over HTTP, and pools of connections to a test's
database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.test_utils import TestServer
from calls_platform.db import Pool, open_pool


@asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[TestServer]:
    """`app` served on a free loopback port until exit (`server.make_url("")` is its URL)."""
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server(shutdown_timeout=1)
    try:
        yield server
    finally:
        await server.close()


def base_url(server: TestServer) -> str:
    """The server's base URL, without a trailing slash."""
    return str(server.make_url("")).rstrip("/")


@asynccontextmanager
async def pooled(database_url: str, *, name: str, max_size: int = 10) -> AsyncIterator[Pool]:
    """A connection pool to `database_url`, open and ready until exit."""
    pool = await open_pool(database_url, name=name, max_size=max_size)
    await pool.wait()
    try:
        yield pool
    finally:
        await pool.close()
