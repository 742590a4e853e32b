"""`calls_ended_total{status}` counts a call once, when the dialer first learns its final
status; repeated, late or out-of-order callbacks do not count again."""

from __future__ import annotations

from typing import Any

import pytest
from calls_platform.db import Pool
from dialer import carrier_news
from prometheus_client import REGISTRY

pytestmark = pytest.mark.integration


def ended(status: str) -> float:
    return REGISTRY.get_sample_value("calls_ended_total", {"status": status}) or 0.0


async def test_a_call_is_counted_once_under_its_final_status(pool: Pool, calls: Any) -> None:
    call = await calls.enqueued("org_outcomes")
    busy_before, completed_before = ended("busy"), ended("completed")
    async with pool.connection() as conn:
        await carrier_news.note_carrier_status(conn, call.call_id, "ringing")
        assert ended("busy") == busy_before  # not an end
        await carrier_news.note_carrier_status(conn, call.call_id, "busy")
        await carrier_news.note_carrier_status(conn, call.call_id, "busy")  # the callback again
        await carrier_news.note_carrier_status(conn, call.call_id, "completed")  # after a final one
    assert ended("busy") == busy_before + 1
    assert ended("completed") == completed_before
