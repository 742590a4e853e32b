"""Scenario: the dialer is killed (-9) mid-campaign and restarted. None of the campaign's
promises changes: nothing dialed before its window opens, a number listed after acceptance is
never dialed, a paused batch stays paused across the kill, max_concurrency holds at the
carrier, a busy-twice number gets exactly its three attempts, every other number is dialed
exactly once."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from carrier_sim.client import SimCall

from tests.chaos.harness import MakeSystem, numbers, post_until_accepted, sim_calls, until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

ORG = "org_chaos_campaign"
CALLER = "+14155550199"
OPENS_IN = 10.0


def window_opening_in(seconds: float) -> dict[str, Any]:
    """Every day from `seconds` from now, in Los Angeles' local time (+1650's zone)."""
    local = datetime.now(UTC).astimezone(ZoneInfo("America/Los_Angeles"))
    start = local + timedelta(seconds=seconds)
    end = start + timedelta(hours=1)
    return {"start": start.strftime("%H:%M:%S"), "end": end.strftime("%H:%M:%S")}


def most_at_once(dials: list[SimCall]) -> int:
    edges = sorted(
        [(d["created_at"], 1) for d in dials] + [(d["end_time"] or 1e12, -1) for d in dials]
    )
    in_flight = most = 0
    for _, step in edges:
        in_flight += step
        most = max(most, in_flight)
    return most


async def test_dialer_killed_mid_campaign_keeps_every_campaign_rule(
    make_system: MakeSystem,
) -> None:
    chaos = await make_system("campaign-kill")
    main = numbers(12)
    busy_twice = f"+15005550092{str(uuid.uuid4().int)[:4]}"
    listed = main[5]
    held = numbers(4)
    async with aiohttp.ClientSession() as http:
        accepted_at = time.time()
        campaign = await post_until_accepted(
            http,
            chaos,
            "/calls/batch",
            {
                "to_numbers": main,
                # +1500 rings in every NANP zone (Guam to Newfoundland): a zone of its own
                "recipients": [{"to_number": busy_twice, "time_zone": "America/Los_Angeles"}],
                "from_number": CALLER,
                "max_concurrency": 2,
                "retry": {"max_attempts": 3, "on": ["busy"], "delay_seconds": 1},
                "schedule": {"window": window_opening_in(OPENS_IN)},
            },
            ORG,
        )
        # its window opens with the campaign's, so nothing of it can be dialed before the
        # pause below is recorded (a batch dialable at once raced its own pause)
        paused_batch = await post_until_accepted(
            http,
            chaos,
            "/calls/batch",
            {
                "to_numbers": held,
                "from_number": CALLER,
                "schedule": {"window": window_opening_in(OPENS_IN)},
            },
            ORG,
        )
        async with http.post(
            f"{chaos.gateway}/calls/batch/{paused_batch['batch_id']}/pause",
            headers=chaos.auth(ORG),
        ) as r:
            assert r.status == 202, await r.text()
        async with http.put(f"{chaos.gateway}/do-not-call/{listed}", headers=chaos.auth(ORG)) as r:
            assert r.status == 201, await r.text()

        async def rules_at_the_dialer() -> bool:
            # the pause and the listing reach the dialer through the relay before the window
            # opens (how soon is a benchmark's figure): the rules are what this test is about
            paused = await chaos.query(
                "SELECT 1 FROM dialer.batch_pauses WHERE batch_id = %s AND paused",
                paused_batch["batch_id"],
            )
            listing = await chaos.query(
                "SELECT 1 FROM dialer.do_not_call"
                " WHERE organization_id = %s AND number = %s AND listed",
                ORG,
                listed,
            )
            return bool(paused and listing)

        await until(rules_at_the_dialer, OPENS_IN, "the pause and the listing at the dialer")
        assert time.time() < accepted_at + OPENS_IN - 1.0, "they came after the window opened"

        async def some_dialed() -> bool:
            calls = (await sim_calls(http, chaos))["calls"]
            return sum(c["to"] in set(main) for c in calls) >= 3

        await until(some_dialed, 30, "the campaign's first dials")
        chaos.kill("dialer")
        await asyncio.sleep(1.0)
        await chaos.restart("dialer")

        async def campaign_done() -> bool:
            async with http.get(
                f"{chaos.gateway}/calls/batch/{campaign['batch_id']}", headers=chaos.auth(ORG)
            ) as r:
                batch = await r.json()
            last = batch["calls"][-1]
            return bool(
                batch["status"] == "completed"
                and last["attempts"] == 3
                and last["call_status"] == "completed"
            )

        await until(campaign_done, 90, "the campaign to finish")
        held_dials = [c for c in (await sim_calls(http, chaos))["calls"] if c["to"] in set(held)]
        assert held_dials == []  # paused before the kill, still paused after it

        async with http.post(
            f"{chaos.gateway}/calls/batch/{paused_batch['batch_id']}/resume",
            headers=chaos.auth(ORG),
        ) as r:
            assert r.status == 202, await r.text()

        async def held_dialed() -> bool:
            calls = (await sim_calls(http, chaos))["calls"]
            return sum(c["to"] in set(held) for c in calls) >= len(held)

        await until(held_dialed, 30, "the resumed batch's dials")
        await asyncio.sleep(2.0)
        dials = (await sim_calls(http, chaos))["calls"]

    campaign_dials = [d for d in dials if d["to"] in {*main, busy_twice}]
    assert min(d["created_at"] for d in campaign_dials) >= accepted_at + OPENS_IN - 1.0
    assert listed not in {d["to"] for d in dials}
    to_main = [d["to"] for d in campaign_dials if d["to"] in set(main)]
    assert sorted(to_main) == sorted(n for n in main if n != listed)  # each exactly once
    assert [d["status"] for d in campaign_dials if d["to"] == busy_twice] == [
        "busy",
        "busy",
        "completed",
    ]
    assert most_at_once(campaign_dials) <= 2
    assert sorted(d["to"] for d in dials if d["to"] in set(held)) == sorted(held)
