"""A recorded call whose every callback was lost, through every service as a real process: the
dialer's watchdog finds it completed at the carrier, lists its recordings there and reports the
one made, so the recording is still downloaded, stored and served; the call ends when the
carrier says it ended; and the recording callback, should it come late after all, is stored
once (the dialer used its event id)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import psycopg
import pytest
from calls_testing import new_org_id, unique_number
from calls_testing.audio import assert_wav
from calls_testing.system import System
from twilio.request_validator import RequestValidator

from tests.conftest import download_recording, get_call, place_call, recording_stored

pytestmark = pytest.mark.integration


@pytest.fixture
async def callbacks_dropped(system: System, http: aiohttp.ClientSession) -> AsyncIterator[None]:
    """The carrier sends no callback while the test runs (lifted afterwards, whatever
    happened)."""
    await system.sim(http).set_faults(drop_callbacks=True)
    yield
    await system.sim(http).set_faults(drop_callbacks=False)


async def carrier_call(http: aiohttp.ClientSession, system: System, sid: str) -> Any:
    """The call as the carrier's REST API shows it."""
    env = system.services["simulator"].env
    auth = aiohttp.BasicAuth(env["SIM_ACCOUNT_SID"], env["SIM_AUTH_TOKEN"]).encode()
    url = f"{system.simulator}/2010-04-01/Accounts/{env['SIM_ACCOUNT_SID']}/Calls/{sid}.json"
    async with http.get(url, headers={"Authorization": auth}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def recording_reports(system: System, call_id: str) -> list[dict[str, Any]]:
    """The RecordingReported events in the call's stream, as stored."""
    async with await psycopg.AsyncConnection.connect(system.database_url) as conn:
        cur = await conn.execute(
            "SELECT data FROM eventstore.events WHERE stream_id = %s AND event_type = %s",
            (f"call-{call_id}", "RecordingReported"),
        )
        return [row[0] for row in await cur.fetchall()]


async def test_a_recorded_call_whose_callbacks_were_lost_still_gets_its_recording(
    system: System, http: aiohttp.ClientSession, callbacks_dropped: None
) -> None:
    org = new_org_id()
    call_id = await place_call(http, system, org, from_number=unique_number(), record=True)

    # no callback reaches the gateway: the watchdog (DIALER_STALE_AFTER_SECONDS=2) asks
    call = await recording_stored(http, system, org, call_id)

    assert (call["status"], call["outcome"]) == ("completed", "completed")
    assert call["recording_url"] == f"call-{call['call_sid']}.wav"
    fetched = await carrier_call(http, system, call["call_sid"])
    assert fetched["status"] == "completed"
    assert call["duration"] == int(fetched["duration"])
    # when the call ended at the carrier, not when the watchdog found out
    assert datetime.fromisoformat(call["end_time"]) == parsedate_to_datetime(fetched["end_time"])

    [report] = await recording_reports(system, call_id)
    assert report["reported_via"] == "reconciliation"  # its callback really was lost
    made = await system.sim(http).call(call["call_sid"])
    assert report["recording_sid"] == made["recording_sid"]

    assert_wav(await download_recording(http, system, org, call_id))

    # the recording callback arrives after all, late: the report is stored once
    env = system.services["gateway"].env
    url = f"{system.gateway}/webhooks/twilio/recording?call_id={call_id}&org={org}"
    params = {
        "AccountSid": env["TWILIO_ACCOUNT_SID"],
        "CallSid": call["call_sid"],
        "RecordingSid": made["recording_sid"],
        "RecordingUrl": report["recording_url"],
        "RecordingStatus": "completed",
        "RecordingDuration": str(report["duration_seconds"]),
        "RecordingChannels": "2",
        "RecordingSource": "OutboundAPI",
        "ErrorCode": "0",
    }
    signature = RequestValidator(env["TWILIO_AUTH_TOKEN"]).compute_signature(url, params)
    async with http.post(url, data=params, headers={"X-Twilio-Signature": signature}) as r:
        assert r.status == 204, await r.text()
    assert [r["reported_via"] for r in await recording_reports(system, call_id)] == [
        "reconciliation"
    ]
    assert (await get_call(http, system, org, call_id))["recording_url"] == call["recording_url"]
