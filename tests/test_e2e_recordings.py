"""A call's recording, through every service as a real process: the dialer asks the carrier
simulator to record → signed recording callback → gateway → RecordingReported → relay →
RabbitMQ → recordings service downloads the WAV, checks and stores it → RecordingStored →
call-log projector sets `recording_url` → GET /calls/{id}/recording streams it via the gateway."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from calls_testing import new_org_id, unique_number
from calls_testing.audio import assert_wav
from calls_testing.system import System

from tests.conftest import RECORDING_SECONDS, get_call, place_call

pytestmark = pytest.mark.integration


async def wait_for_call(
    http: aiohttp.ClientSession, system: System, org: str, call_id: str, done: Any
) -> Any:
    deadline = time.monotonic() + RECORDING_SECONDS
    while True:
        call = await get_call(http, system, org, call_id)
        if done(call):
            return call
        assert time.monotonic() < deadline, f"call never got there: {call}"
        await asyncio.sleep(0.1)


async def recording(
    http: aiohttp.ClientSession, system: System, org: str, call_id: str, **headers: str
) -> tuple[int, Any, bytes]:
    async with http.get(
        f"{system.gateway}/calls/{call_id}/recording", headers={**system.auth(org), **headers}
    ) as r:
        return r.status, r.headers, await r.read()


async def test_a_recorded_call_gets_its_recording_stored_served_and_seekable(
    system: System, http: aiohttp.ClientSession
) -> None:
    org, other = new_org_id(), new_org_id()
    call_id = await place_call(http, system, org, from_number=unique_number())

    # recording_url appears only once the recording is stored, and names the call's SID
    call = await wait_for_call(http, system, org, call_id, lambda c: c["recording_url"])
    assert call["status"] == "completed"
    assert call["recording_url"] == f"call-{call['call_sid']}.wav"
    asked = (await system.sim(http).call(call["call_sid"]))["params"]
    assert (asked["Record"], asked["RecordingChannels"]) == ("true", "dual")
    assert asked["RecordingStatusCallbackEvent"] == ["completed", "absent"]
    assert urlsplit(asked["RecordingStatusCallback"]).path == "/webhooks/twilio/recording"

    status, headers, body = await recording(http, system, org, call_id)
    assert status == 200
    assert headers["Content-Type"] == "audio/wav"
    assert int(headers["Content-Length"]) == len(body)
    assert headers["Accept-Ranges"] == "bytes"
    assert_wav(body)

    async with http.head(
        f"{system.gateway}/calls/{call_id}/recording", headers=system.auth(org)
    ) as r:
        assert (r.status, r.headers["Content-Length"]) == (200, str(len(body)))
        assert await r.read() == b""

    status, headers, part = await recording(http, system, org, call_id, Range="bytes=44-1043")
    assert status == 206
    assert headers["Content-Range"] == f"bytes 44-1043/{len(body)}"
    assert int(headers["Content-Length"]) == 1000
    assert part == body[44:1044]
    status, headers, tail = await recording(http, system, org, call_id, Range="bytes=-10")
    assert (status, tail) == (206, body[-10:])
    status, headers, _ = await recording(http, system, org, call_id, Range=f"bytes={len(body)}-")
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(body)}"

    # another organization: exactly as if there were no such call
    status, _, error = await recording(http, system, other, call_id)
    assert status == 404
    assert b'"not_found"' in error

    async with http.delete(
        f"{system.gateway}/calls/{call_id}/recording", headers=system.auth(other)
    ) as r:
        assert r.status == 404
    async with http.delete(
        f"{system.gateway}/calls/{call_id}/recording", headers=system.auth(org)
    ) as r:
        assert r.status == 204
    assert (await recording(http, system, org, call_id))[0] == 404
    await wait_for_call(http, system, org, call_id, lambda c: c["recording_url"] is None)


async def test_an_agent_with_recording_off_gets_no_recording(
    system: System, http: aiohttp.ClientSession
) -> None:
    org = new_org_id()
    async with http.post(
        f"{system.gateway}/agents",
        json={"name": "Quiet", "phone_number": unique_number(), "recording_enabled": False},
        headers=system.auth(org),
    ) as r:
        assert r.status == 201
        agent = await r.json()
    assert agent["recording_enabled"] is False
    quiet = await place_call(http, system, org, agent_id=agent["id"])
    # a single call may still ask for a recording
    recorded = await place_call(http, system, org, agent_id=agent["id"], record=True)

    loud = await wait_for_call(http, system, org, recorded, lambda c: c["recording_url"])
    call = await wait_for_call(http, system, org, quiet, lambda c: c["status"] == "completed")
    asked = (await system.sim(http).call(call["call_sid"]))["params"]
    assert "Record" not in asked
    assert "RecordingStatusCallback" not in asked
    assert loud["recording_url"] == f"call-{loud['call_sid']}.wav"
    # the recorded call's recording is stored by now; the other has none, and never will
    assert (await get_call(http, system, org, quiet))["recording_url"] is None
    assert (await recording(http, system, org, quiet))[0] == 404
