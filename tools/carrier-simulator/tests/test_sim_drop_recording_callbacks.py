"""Integration: the `drop_recording_callbacks` fault loses a call's recording callbacks only;
its status callbacks still come, and the recording is still made and listed."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from calls_testing.receiver import Receiver
from twilio.rest import Client

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Dial, Sim


async def test_only_the_recording_callbacks_are_dropped(
    sim: Sim, twilio: Client, receiver: Receiver, dial: Dial
) -> None:
    faults = await sim.control("POST", "/_sim/faults", {"drop_recording_callbacks": True})
    assert faults["drop_recording_callbacks"] is True
    assert faults["drop_callbacks"] is False
    call = await dial(
        record=True,
        recording_status_callback=f"{receiver.url}/recording",
        recording_status_callback_event=["in-progress", "completed"],
    )
    await receiver.wait_status(call.sid, "completed")
    for _ in range(100):  # until the simulator has finished the recording
        made = await sim.call(call.sid)
        if made["recording_sid"]:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # a recording callback would have arrived by now

    assert receiver.for_call(call.sid, "/recording") == []
    [listed] = await twilio.calls(call.sid).recordings.list_async()
    assert listed.sid == made["recording_sid"]
    assert listed.status == "completed"


async def test_lifting_the_fault_brings_recording_callbacks_back(
    sim: Sim, receiver: Receiver, dial: Dial
) -> None:
    await sim.control("POST", "/_sim/faults", {"drop_recording_callbacks": True})
    assert (await sim.control("POST", "/_sim/faults", {"drop_recording_callbacks": False}))[
        "drop_recording_callbacks"
    ] is False
    call = await dial(record=True, recording_status_callback=f"{receiver.url}/recording")
    await receiver.wait_for(lambda _: receiver.for_call(call.sid, "/recording"))
    [callback] = receiver.for_call(call.sid, "/recording")
    assert callback["RecordingStatus"] == "completed"
