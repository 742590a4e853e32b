"""A call from POST /calls to its final state, through every service as a real process:
gateway → event store → relay → RabbitMQ → dialer → twilio library → carrier simulator →
signed status callbacks → gateway → event store → call-log projector → GET /calls/{id}."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Collection
from typing import Any

import aiohttp
import pytest
from calls_events import TERMINAL_CALL_STATUSES
from calls_testing import new_org_id, unique_number
from calls_testing.system import System

from tests.conftest import get_call, place_call

pytestmark = pytest.mark.integration

TERMINAL = TERMINAL_CALL_STATUSES


async def poll_call(
    http: aiohttp.ClientSession, system: System, org: str, call_id: str, until: Collection[str]
) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        call = await get_call(http, system, org, call_id)
        if call["status"] in until or time.monotonic() > deadline:
            return call
        await asyncio.sleep(0.2)


async def ended_call(http: aiohttp.ClientSession, system: System, to_number: str) -> dict[str, Any]:
    """Place a call to `to_number` in a new organization; return it once it has ended."""
    org = new_org_id()
    call_id = await place_call(http, system, org, to_number=to_number, from_number=unique_number())
    return await poll_call(http, system, org, call_id, TERMINAL)


async def test_call_is_dialed_once_and_completes_with_carrier_details(
    system: System, http: aiohttp.ClientSession
) -> None:
    org = new_org_id()
    agent_number, to_number = unique_number(), unique_number()
    async with http.post(
        f"{system.gateway}/agents",
        json={"name": "Ava", "phone_number": agent_number},
        headers=system.auth(org),
    ) as r:
        assert r.status == 201
        agent = await r.json()

    async with http.post(
        f"{system.gateway}/calls",
        json={"to_number": to_number, "agent_id": agent["id"]},
        headers=system.auth(org),
    ) as r:
        assert r.status == 202
        accepted = await r.json()
    call_id = accepted["call_id"]
    assert accepted["call_sid"] == "queued-" + uuid.UUID(call_id).hex[:12]
    assert accepted["status"] == "queued"

    # read-your-writes: no 404 window right after the 202
    async with http.get(f"{system.gateway}/calls/{call_id}", headers=system.auth(org)) as r:
        assert r.status == 200
        assert (await r.json())["from_number"] == agent_number

    call = await poll_call(http, system, org, call_id, {"completed"})
    assert call["status"] == "completed"
    assert call["outcome"] == "completed"
    assert call["call_sid"].startswith("CA")
    assert len(call["call_sid"]) == 34
    assert call["agent_name"] == "Ava"
    assert call["from_number"] == agent_number
    assert call["start_time"]
    assert call["end_time"]
    assert call["duration"] is not None
    assert call["duration"] >= 0
    dialed = await system.sim(http).calls(to_number)
    assert [c["sid"] for c in dialed] == [call["call_sid"]]


async def test_invalid_number_fails_with_the_carriers_error(
    system: System, http: aiohttp.ClientSession
) -> None:
    call = await ended_call(http, system, "+15005550001")
    assert call["status"] == "failed"
    assert call["outcome"] == "invalid_number"
    assert "not a valid phone number" in call["error_reason"]


async def test_busy_line_ends_failed_with_outcome_busy(
    system: System, http: aiohttp.ClientSession
) -> None:
    call = await ended_call(http, system, "+15005550003")
    assert (call["status"], call["outcome"]) == ("failed", "busy")


async def test_another_organizations_call_is_not_found(
    system: System, http: aiohttp.ClientSession
) -> None:
    owner, other = new_org_id(), new_org_id()
    async with http.post(
        f"{system.gateway}/calls",
        json={"to_number": unique_number(), "from_number": unique_number()},
        headers=system.auth(owner),
    ) as r:
        call_id = (await r.json())["call_id"]
    async with http.get(f"{system.gateway}/calls/{call_id}", headers=system.auth(other)) as r:
        assert r.status == 404
        assert (await r.json())["error"]["code"] == "not_found"
    async with http.get(f"{system.gateway}/calls", headers=system.auth(other)) as r:
        assert (await r.json())["total"] == 0


async def test_bad_requests_are_4xx_json_and_dial_nothing(
    system: System, http: aiohttp.ClientSession
) -> None:
    org = new_org_id()
    to_number = unique_number()
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"data": "{not json", "headers": {"Content-Type": "application/json"}}, 400, ""),
        ({"json": {"to_number": to_number[1:]}}, 422, "to_number"),
        ({"json": {"to_number": int(to_number[1:])}}, 422, "to_number"),
        ({"json": {"to_number": to_number}}, 422, "from_number"),
        ({"json": {"to_number": to_number, "agent_id": str(uuid.uuid4())}}, 422, "agent_id"),
        ({"data": f"to_number={to_number}"}, 415, ""),
    ]
    for kwargs, status, field in cases:
        headers = {**system.auth(org), **kwargs.pop("headers", {})}
        async with http.post(f"{system.gateway}/calls", headers=headers, **kwargs) as r:
            assert r.status == status, (kwargs, await r.text())
            body = await r.json()
            assert "error" in body
            if field:
                assert field in {d["field"] for d in body["error"]["details"]}
    async with http.get(f"{system.gateway}/calls", headers=system.auth(org)) as r:
        assert (await r.json())["total"] == 0
    await asyncio.sleep(0.5)
    assert await system.sim(http).calls(to_number) == []
    assert await system.sim(http).calls(to_number[1:]) == []


async def test_requests_without_a_valid_token_are_401(
    system: System, http: aiohttp.ClientSession
) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        async with http.get(f"{system.gateway}/calls", headers=headers) as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "unauthorized"


async def test_call_whose_callbacks_are_lost_still_ends_completed_with_its_duration(
    system: System, http: aiohttp.ClientSession
) -> None:
    org = new_org_id()
    await system.sim(http).set_faults(drop_callbacks=True)
    try:
        async with http.post(
            f"{system.gateway}/calls",
            json={"to_number": unique_number(), "from_number": unique_number()},
            headers=system.auth(org),
        ) as r:
            call_id = (await r.json())["call_id"]
        call = await poll_call(http, system, org, call_id, TERMINAL)
    finally:
        await system.sim(http).set_faults(drop_callbacks=False)
    assert call["status"] == "completed"
    assert call["duration"] is not None
    assert call["end_time"] is not None
