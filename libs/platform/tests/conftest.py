"""Fixtures shared by the platform's tests: a connection to this run's broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aio_pika.abc import AbstractRobustConnection
from calls_platform import amqp


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[AbstractRobustConnection]:
    connection = await amqp.connect(amqp_url)
    async with connection:
        yield connection
