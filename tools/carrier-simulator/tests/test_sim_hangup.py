"""Integration: ending calls through ``update_async(status=...)`` as the dialer does."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from calls_testing.receiver import Receiver
from carrier_sim import SimConfig
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Dial, Sim

LONG = "+15005550007"
LONG_RING = "+15005550008"


# queued until canceled: the carrier does not start the call for a minute (with the default
# 20 ms, the cancel had to come within 20 ms of the create to find it queued)
QUEUEING = SimConfig(ring_seconds=0.05, talk_seconds=0.15, initiate_delay_seconds=60)


@pytest.mark.parametrize("sim_config", [QUEUEING])
async def test_cancel_a_queued_call(twilio: Client, receiver: Receiver, dial: Dial) -> None:
    call = await dial(LONG)
    updated = await twilio.calls(call.sid).update_async(status="canceled")
    assert updated.status == "canceled"
    final = await receiver.wait_status(call.sid, "canceled")
    assert final["SipResponseCode"] == "487"
    assert final["CallDuration"] == "0"
    await asyncio.sleep(0.2)
    assert [r["CallStatus"] for r in receiver.for_call(call.sid)] == ["canceled"]
    assert (await twilio.calls(call.sid).fetch_async()).status == "canceled"


async def test_cancel_a_ringing_call(twilio: Client, receiver: Receiver, dial: Dial) -> None:
    call = await dial(LONG_RING + "2")  # rings until canceled (LONG rang only RING_SECONDS)
    await receiver.wait_status(call.sid, "ringing")
    await twilio.calls(call.sid).update_async(status="canceled")
    await receiver.wait_status(call.sid, "canceled")
    statuses = [r["CallStatus"] for r in receiver.for_call(call.sid)]
    assert statuses == ["initiated", "ringing", "canceled"]
    assert [r["SequenceNumber"] for r in receiver.for_call(call.sid)] == ["0", "1", "2"]


async def test_a_long_ringing_call_rings_until_canceled(
    twilio: Client, receiver: Receiver, dial: Dial
) -> None:
    call = await dial(LONG_RING + "1")
    await receiver.wait_status(call.sid, "ringing")
    await asyncio.sleep(0.5)  # several times RING_SECONDS: still ringing
    assert (await twilio.calls(call.sid).fetch_async()).status == "ringing"
    canceled = await twilio.calls(call.sid).update_async(status="canceled")
    assert canceled.status == "canceled"
    final = await receiver.wait_status(call.sid, "canceled")
    assert (final["SipResponseCode"], final["CallDuration"]) == ("487", "0")
    assert [r["CallStatus"] for r in receiver.for_call(call.sid)] == [
        "initiated",
        "ringing",
        "canceled",
    ]


async def test_complete_an_in_progress_long_call(
    twilio: Client, receiver: Receiver, dial: Dial
) -> None:
    call = await dial(LONG)
    await receiver.wait_status(call.sid, "in-progress")
    await asyncio.sleep(0.1)
    live = await twilio.calls(call.sid).fetch_async()
    assert live.status == "in-progress"
    with pytest.raises(TwilioRestException) as excinfo:
        await twilio.calls(call.sid).update_async(status="canceled")
    assert (excinfo.value.status, excinfo.value.code) == (400, 21220)

    ended = await twilio.calls(call.sid).update_async(status="completed")
    assert ended.status == "completed"
    final = await receiver.wait_status(call.sid, "completed")
    assert final["SipResponseCode"] == "200"
    assert int(final["CallDuration"]) < 5
    fetched = await twilio.calls(call.sid).fetch_async()
    assert fetched.status == "completed"
    assert fetched.end_time is not None


async def test_updating_an_ended_call_fails(twilio: Client, receiver: Receiver, dial: Dial) -> None:
    call = await dial()
    await receiver.wait_status(call.sid, "completed")
    for status in ("canceled", "completed"):
        with pytest.raises(TwilioRestException) as excinfo:
            await twilio.calls(call.sid).update_async(status=status)
        assert excinfo.value.code == 21220
        assert "Call is not in-progress. Cannot redirect." in excinfo.value.msg
    with pytest.raises(TwilioRestException) as missing:
        await twilio.calls("CA" + "f" * 32).update_async(status="canceled")
    assert missing.value.status == 404


async def test_server_shutdown_cancels_live_calls(sim: Sim, dial: Dial) -> None:
    await dial(LONG)
    await dial(LONG)
    await asyncio.sleep(0.05)
    await sim.server.close()  # must not hang on the 60 s calls nor leak tasks
    pending = [t for t in asyncio.all_tasks() if t.get_name().startswith("playout-")]
    assert pending == []
