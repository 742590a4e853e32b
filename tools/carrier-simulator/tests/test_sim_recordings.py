"""Integration: Record=true, recording status callbacks and downloading the WAV."""

from __future__ import annotations

import asyncio
import io
import wave
from typing import TYPE_CHECKING

import pytest
from calls_testing.receiver import Receiver
from twilio.rest import Client

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Dial, Sim


async def _download(sim: Sim, url: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    async with sim.session.get(url, headers=headers) as response:
        return response.status, response.content_type, await response.read()


@pytest.mark.parametrize(("channels", "expected"), [("mono", 1), ("dual", 2)])
async def test_recording_callback_and_wav(
    sim: Sim, twilio: Client, receiver: Receiver, dial: Dial, channels: str, expected: int
) -> None:
    call = await dial(
        record=True,
        recording_channels=channels,
        recording_status_callback=f"{receiver.url}/recording",
    )
    await receiver.wait_for(lambda _: receiver.for_call(call.sid, "/recording"))
    [callback] = receiver.for_call(call.sid, "/recording")
    assert sim.signature_ok(callback)
    assert callback["RecordingStatus"] == "completed"
    assert callback["RecordingSid"].startswith("RE")
    assert len(callback["RecordingSid"]) == 34
    assert callback["RecordingChannels"] == str(expected)
    assert callback["RecordingSource"] == "OutboundAPI"
    assert callback["AccountSid"] == sim.config.account_sid
    assert callback["RecordingStartTime"]
    url = callback["RecordingUrl"]
    assert url == f"{sim.account_uri}/Recordings/{callback['RecordingSid']}"
    # the recording callback comes after the terminal status callback
    assert receiver.for_call(call.sid)[-1]["CallStatus"] == "completed"

    status, content_type, body = await _download(sim, url + ".wav", sim.auth)
    assert (status, content_type) == (200, "audio/x-wav")
    with wave.open(io.BytesIO(body)) as parsed:
        assert parsed.getnchannels() == expected
        assert parsed.getframerate() == 8000
        assert parsed.getsampwidth() == 2
        seconds = parsed.getnframes() / parsed.getframerate()
    assert seconds == pytest.approx(sim.config.talk_seconds, abs=0.15)
    assert int(callback["RecordingDuration"]) == round(seconds)

    assert (await _download(sim, url + ".wav", {}))[0] == 401
    assert (await _download(sim, url + ".mp3", sim.auth))[0] == 404
    missing = f"{sim.account_uri}/Recordings/RE{'0' * 32}.wav"
    assert (await _download(sim, missing, sim.auth))[0] == 404

    recording = await twilio.recordings(callback["RecordingSid"]).fetch_async()
    assert recording.call_sid == call.sid
    assert recording.channels == expected


async def test_recording_events_in_progress_and_absent(receiver: Receiver, dial: Dial) -> None:
    events = ["in-progress", "completed", "absent"]
    answered = await dial(
        record=True,
        recording_status_callback=f"{receiver.url}/recording",
        recording_status_callback_event=events,
    )
    unanswered = await dial(
        "+15005550004",
        record=True,
        recording_status_callback=f"{receiver.url}/recording",
        recording_status_callback_event=events,
    )
    await receiver.wait_for(lambda _: len(receiver.for_call(answered.sid, "/recording")) == 2)
    await receiver.wait_for(lambda _: receiver.for_call(unanswered.sid, "/recording"))
    statuses = [r["RecordingStatus"] for r in receiver.for_call(answered.sid, "/recording")]
    assert statuses == ["in-progress", "completed"]
    [absent] = receiver.for_call(unanswered.sid, "/recording")
    assert absent["RecordingStatus"] == "absent"
    assert absent.get("RecordingUrl") is None


async def test_no_recording_without_record(sim: Sim, receiver: Receiver, dial: Dial) -> None:
    call = await dial(recording_status_callback=f"{receiver.url}/recording")
    await receiver.wait_status(call.sid, "completed")
    await asyncio.sleep(0.05)
    assert receiver.for_call(call.sid, "/recording") == []
    [record] = (await sim.state())["calls"]
    assert record["recording_sid"] is None
