"""Integration: the /_sim control API and fault injection."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from calls_testing.receiver import Receiver
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Dial, Sim


async def test_healthz_and_control_api(sim: Sim, receiver: Receiver, dial: Dial) -> None:
    assert await sim.control("GET", "/healthz") == {"status": "ok"}
    call = await dial(machine_detection="Enable")
    state = await sim.state()
    assert state["create_requests"] == 1
    [record] = state["calls"]
    assert record["sid"] == call.sid
    assert record["to"] == "+14155551212"
    assert record["from"] == "+15017122661"
    assert record["status_callback"] == f"{receiver.url}/status"
    assert isinstance(record["created_at"], float)
    assert record["params"]["MachineDetection"] == "Enable"
    assert record["params"]["StatusCallbackEvent"] == [
        "initiated",
        "ringing",
        "answered",
        "completed",
    ]
    await sim.control("POST", "/_sim/faults", {"drop_callbacks": True})
    assert await sim.control("POST", "/_sim/reset") == {"status": "ok"}
    assert await sim.state() == {"calls": [], "create_requests": 0}
    assert (await sim.control("GET", "/_sim/faults"))["drop_callbacks"] is False


async def test_bad_fault_payload_is_rejected(sim: Sim) -> None:
    async with sim.session.post(f"{sim.url}/_sim/faults", json={"bogus": 1}) as response:
        assert response.status == 400


async def test_429_then_success(sim: Sim, dial: Dial) -> None:
    faults = await sim.control(
        "POST",
        "/_sim/faults",
        {"create_responses": [{"status": 429, "code": 20429, "message": "Too Many Requests"}]},
    )
    assert len(faults["create_responses"]) == 1
    with pytest.raises(TwilioRestException) as excinfo:
        await dial()
    assert (excinfo.value.status, excinfo.value.code) == (429, 20429)
    assert "Too Many Requests" in excinfo.value.msg
    call = await dial()
    state = await sim.state()
    assert state["create_requests"] == 2
    assert [c["sid"] for c in state["calls"]] == [call.sid]
    assert (await sim.control("GET", "/_sim/faults"))["create_responses"] == []


async def test_500_with_call_created_is_ambiguous(sim: Sim, receiver: Receiver, dial: Dial) -> None:
    await sim.control(
        "POST", "/_sim/faults", {"create_responses": [{"status": 500, "call_created": True}]}
    )
    with pytest.raises(TwilioRestException) as excinfo:
        await dial()
    assert excinfo.value.status == 500
    [record] = (await sim.state())["calls"]
    await receiver.wait_status(record["sid"], "completed")  # the call really happened


async def test_timeout_creates_the_call_anyway(sim: Sim, receiver: Receiver, dial: Dial) -> None:
    await sim.control("POST", "/_sim/faults", {"create_responses": [{"timeout_seconds": 0.5}]})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(dial(), timeout=0.2)
    [record] = (await sim.state())["calls"]
    await receiver.wait_status(record["sid"], "completed")


async def test_create_delay(sim: Sim, dial: Dial) -> None:
    await sim.control("POST", "/_sim/faults", {"create_delay_seconds": 0.2})
    loop = asyncio.get_running_loop()
    started = loop.time()
    await dial()
    assert loop.time() - started >= 0.2


async def test_drop_callbacks(sim: Sim, twilio: Client, receiver: Receiver, dial: Dial) -> None:
    await sim.control("POST", "/_sim/faults", {"drop_callbacks": True})
    call = await dial()
    ring, talk = sim.config.ring_seconds, sim.config.talk_seconds
    await asyncio.sleep(ring + talk)
    async with asyncio.timeout(10):  # played out (a busy machine's timers run late)
        while (await twilio.calls(call.sid).fetch_async()).status != "completed":  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # a callback sent at the end would have arrived
    assert receiver.requests == []


async def test_duplicate_callbacks(sim: Sim, receiver: Receiver, dial: Dial) -> None:
    await sim.control("POST", "/_sim/faults", {"duplicate_callbacks": True})
    call = await dial()
    await receiver.wait_for(lambda _: len(receiver.for_call(call.sid)) == 8)
    sequence = [r["SequenceNumber"] for r in receiver.for_call(call.sid)]
    assert sequence == ["0", "0", "1", "1", "2", "2", "3", "3"]
    assert all(sim.signature_ok(r) for r in receiver.for_call(call.sid))


async def test_reorder_callbacks(sim: Sim, receiver: Receiver, dial: Dial) -> None:
    await sim.control("POST", "/_sim/faults", {"reorder_callbacks": True})
    call = await dial()
    await receiver.wait_for(lambda _: len(receiver.for_call(call.sid)) == 4)
    received = receiver.for_call(call.sid)
    assert [r["CallStatus"] for r in received] == [
        "in-progress",
        "initiated",
        "ringing",
        "completed",
    ]
    ordered = sorted(received, key=lambda r: int(r["SequenceNumber"]))
    assert [r["CallStatus"] for r in ordered] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]


async def test_failing_receiver_is_not_retried(sim: Sim, receiver: Receiver, dial: Dial) -> None:
    receiver.status = 500
    call = await dial()
    await receiver.wait_status(call.sid, "completed")
    await asyncio.sleep(0.1)
    assert len(receiver.for_call(call.sid)) == 4


async def test_unreachable_callback_url_does_not_break_the_call(twilio: Client, dial: Dial) -> None:
    call = await dial(status_callback="http://127.0.0.1:9/status")
    for _ in range(100):
        if (await twilio.calls(call.sid).fetch_async()).status == "completed":
            break
        await asyncio.sleep(0.05)
    assert (await twilio.calls(call.sid).fetch_async()).status == "completed"
