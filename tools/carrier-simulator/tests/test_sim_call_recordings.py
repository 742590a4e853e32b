"""Integration: a call's recordings listed through the real twilio library
(``client.calls(sid).recordings.list_async()`` → ``GET .../Calls/{CallSid}/Recordings.json``)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest
from calls_testing.receiver import Receiver
from twilio.base.exceptions import TwilioException
from twilio.rest import Client

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Dial, Sim


async def _ended(sim: Sim, call_sid: str) -> dict[str, Any]:
    for _ in range(200):
        call = await sim.call(call_sid)
        if call["status"] in ("completed", "busy", "no-answer", "failed", "canceled"):
            return dict(call)
        await asyncio.sleep(0.02)
    raise AssertionError(f"call {call_sid} never ended")


async def _recording_made(sim: Sim, call_sid: str) -> str:
    for _ in range(200):
        call = await sim.call(call_sid)
        if call["recording_sid"]:
            return str(call["recording_sid"])
        await asyncio.sleep(0.02)
    raise AssertionError(f"call {call_sid} never got a recording")


async def test_a_recorded_calls_recording_is_listed_as_twilio_shows_it(
    sim: Sim, twilio: Client, receiver: Receiver, dial: Dial
) -> None:
    call = await dial(
        record=True,
        recording_channels="dual",
        recording_status_callback=f"{receiver.url}/recording",
    )
    await receiver.wait_for(lambda _: receiver.for_call(call.sid, "/recording"))
    [callback] = receiver.for_call(call.sid, "/recording")

    [listed] = await twilio.calls(call.sid).recordings.list_async()
    assert listed.sid == callback["RecordingSid"]
    assert listed.call_sid == call.sid
    assert listed.account_sid == sim.config.account_sid
    assert listed.status == "completed"
    assert listed.channels == 2
    assert listed.source == "OutboundAPI"
    assert listed.duration == callback["RecordingDuration"]
    assert isinstance(listed.date_created, datetime)
    assert isinstance(listed.start_time, datetime)
    assert listed.track == "both"
    uri = f"/2010-04-01/Accounts/{sim.config.account_sid}/Calls/{call.sid}/Recordings"
    assert listed.uri == f"{uri}/{listed.sid}.json"
    # the callback's RecordingUrl is the account's recording, where the media is served
    assert callback["RecordingUrl"] == f"{sim.account_uri}/Recordings/{listed.sid}"


async def test_a_recording_whose_callback_was_dropped_is_still_listed(
    sim: Sim, twilio: Client, receiver: Receiver, dial: Dial
) -> None:
    await sim.control("POST", "/_sim/faults", {"drop_callbacks": True})
    call = await dial(record=True, recording_status_callback=f"{receiver.url}/recording")
    recording_sid = await _recording_made(sim, call.sid)

    [listed] = await twilio.calls(call.sid).recordings.list_async()
    assert (listed.sid, listed.status, listed.channels) == (recording_sid, "completed", 1)
    assert receiver.for_call(call.sid, "/recording") == []


async def test_only_the_recordings_made_for_that_call_are_listed(
    sim: Sim, twilio: Client, receiver: Receiver, dial: Dial
) -> None:
    recorded = await dial(record=True, recording_status_callback=f"{receiver.url}/recording")
    unrecorded = await dial()
    unanswered = await dial(
        "+15005550003", record=True, recording_status_callback=f"{receiver.url}/recording"
    )
    recording_sid = await _recording_made(sim, recorded.sid)
    await _ended(sim, unrecorded.sid)
    assert (await _ended(sim, unanswered.sid))["status"] == "busy"

    assert [r.sid for r in await twilio.calls(recorded.sid).recordings.list_async()] == [
        recording_sid
    ]
    assert await twilio.calls(unrecorded.sid).recordings.list_async() == []
    # busy: never answered, so nothing was recorded (its callback says "absent")
    assert await twilio.calls(unanswered.sid).recordings.list_async() == []


async def test_listing_the_recordings_of_an_unknown_call_is_a_404(twilio: Client) -> None:
    # the library reads a list page's error as a TwilioException carrying the response
    with pytest.raises(TwilioException) as raised:
        await twilio.calls("CA" + "0" * 32).recordings.list_async()
    message, response = raised.value.args
    assert message == "Unable to fetch page"
    assert response.status_code == 404
    assert '"code": 20404' in response.text
