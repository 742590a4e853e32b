"""Fixtures of the call log's integration tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from call_log.__main__ import migrate


@pytest.fixture
async def calllog_url(database_factory: Callable[[str], str]) -> str:
    """A fresh database with the event store's and the call log's migrations applied."""
    url = database_factory("calllog")
    await migrate(url)
    return url
