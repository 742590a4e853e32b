"""The due-dials sample behind `dials_pending`, `dials_oldest_pending_age_seconds` and
`dials_pending_unserved_seconds`: per organization, only dials that are due, and an
organization with nothing due loses its series."""

from __future__ import annotations

from typing import Any

import pytest
from calls_platform.db import Pool
from dialer import claims
from dialer.backlog import BacklogGauges, OrganizationBacklog, read_backlog
from prometheus_client import REGISTRY

pytestmark = pytest.mark.integration

GAUGES = ("dials_pending", "dials_oldest_pending_age_seconds", "dials_pending_unserved_seconds")


async def backlog_of(pool: Pool) -> dict[str, OrganizationBacklog]:
    async with pool.connection() as conn:
        return {b.organization_id: b for b in await read_backlog(conn)}


async def age(pool: Pool, call_id: object, seconds: int) -> None:
    """Make a dial due `seconds` ago."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE dialer.dials SET not_before = now() - make_interval(secs => %s)"
            " WHERE call_id = %s",
            (seconds, call_id),
        )


async def test_due_dials_are_counted_per_organization_with_the_oldest_age(
    pool: Pool, calls: Any
) -> None:
    old = await calls.enqueued("org_a")
    await calls.enqueued("org_a")
    await calls.enqueued("org_b")
    await age(pool, old.call_id, 600)
    backlog = await backlog_of(pool)
    assert set(backlog) == {"org_a", "org_b"}
    assert backlog["org_a"].pending == 2
    assert backlog["org_b"].pending == 1
    assert 599 <= backlog["org_a"].oldest_age_seconds < 700
    assert backlog["org_b"].oldest_age_seconds < 60
    # never served: unserved since its oldest dial became due
    assert 599 <= backlog["org_a"].unserved_seconds < 700


async def test_dials_not_due_or_no_longer_pending_are_not_counted(pool: Pool, calls: Any) -> None:
    later = await calls.enqueued("org_later")
    taken = await calls.enqueued("org_taken")
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE dialer.dials SET not_before = now() + interval '1 hour' WHERE call_id = %s",
            (later.call_id,),
        )
        claimed = await claims.claim_next(conn)
    assert claimed is not None
    assert claimed.call_id == taken.call_id
    assert await backlog_of(pool) == {}


async def test_an_organization_served_recently_is_not_unserved_however_old_its_backlog(
    pool: Pool, calls: Any
) -> None:
    first = await calls.enqueued("org_batch", batch_id="b1")
    waiting = await calls.enqueued("org_batch", batch_id="b1")
    await age(pool, first.call_id, 3600)
    await age(pool, waiting.call_id, 3600)
    async with pool.connection() as conn:
        claimed = await claims.claim_next(conn)  # serves the organization now
    assert claimed is not None
    [backlog] = (await backlog_of(pool)).values()
    assert backlog.pending == 1
    assert backlog.oldest_age_seconds >= 3599  # a long batch: its calls waited long
    assert backlog.unserved_seconds < 60  # but it is being dialed


async def test_a_dial_waiting_for_its_number_is_counted_but_not_unserved(
    pool: Pool, calls: Any
) -> None:
    talking = await calls.enqueued("org_busy", "+14155550142")
    async with pool.connection() as conn:
        claimed = await claims.claim_next(conn)
    assert claimed is not None
    assert claimed.call_id == talking.call_id
    waiting = await calls.enqueued("org_busy", "+14155550142")
    await age(pool, waiting.call_id, 3600)
    async with pool.connection() as conn:  # served long ago: the call in flight is a long one
        await conn.execute(
            "UPDATE dialer.fairness SET last_served = now() - interval '1 hour'"
            " WHERE key = 'org:org_busy'"
        )
    [backlog] = (await backlog_of(pool)).values()
    assert backlog.pending == 1
    assert backlog.oldest_age_seconds >= 3599
    assert backlog.unserved_seconds == 0.0  # not an organization the dialer is failing

    other = await calls.enqueued("org_busy")  # one it could dial: unserved again
    await age(pool, other.call_id, 600)
    [backlog] = (await backlog_of(pool)).values()
    assert 599 <= backlog.unserved_seconds < 700


def sample(name: str, org: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"organization_id": org})


def test_gauges_follow_the_sample_and_drop_organizations_with_nothing_due() -> None:
    gauges = BacklogGauges()
    gauges.show(
        [
            OrganizationBacklog("org_g1", 3, 12.5, 2.0),
            OrganizationBacklog("org_g2", 1, 1.0, 1.0),
        ]
    )
    assert sample("dials_pending", "org_g1") == 3
    assert sample("dials_oldest_pending_age_seconds", "org_g1") == 12.5
    assert sample("dials_pending_unserved_seconds", "org_g1") == 2.0
    gauges.show([OrganizationBacklog("org_g2", 2, 3.0, 3.0)])
    for name in GAUGES:
        assert sample(name, "org_g1") is None
    assert sample("dials_pending", "org_g2") == 2
    gauges.show([])
    assert sample("dials_pending", "org_g2") is None
