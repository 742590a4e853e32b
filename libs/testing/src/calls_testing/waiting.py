"""Waiting for something asynchronous to happen, with a deadline and a message that says what."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Condition = Callable[[], Awaitable[bool]]
Wait = Callable[..., Awaitable[None]]
"""The `wait` fixture: `await wait(condition, within=…, what=…)` (it is `wait_until`)."""


async def wait_until(
    condition: Condition, *, within: float = 10.0, what: str = "condition", every: float = 0.05
) -> None:
    """Poll `condition` every `every` seconds until it is true; fail the test after `within`."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(every)
