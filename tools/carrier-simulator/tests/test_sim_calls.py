"""Integration: the real twilio client against the simulator: create, callbacks, fetch, list."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import pytest
from calls_testing.receiver import Receiver
from carrier_sim.client import basic_auth
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Dial, Sim

FROM = "+15017122661"


async def test_call_plays_out_with_signed_ordered_callbacks(
    sim: Sim, receiver: Receiver, dial: Dial
) -> None:
    call = await dial("+14155550100")
    assert re.fullmatch(r"CA[0-9a-f]{32}", call.sid)
    assert call.status == "queued"
    assert call.direction == "outbound-api"
    assert call.to == "+14155550100"
    assert call._from == FROM
    assert call.account_sid == sim.config.account_sid
    assert call.api_version == "2010-04-01"
    assert call.start_time is None
    assert call.end_time is None
    assert call.duration is None
    assert abs(call.date_created - datetime.now(UTC)) < timedelta(seconds=5)

    completed = await receiver.wait_status(call.sid, "completed")
    callbacks = receiver.for_call(call.sid)
    statuses = [r["CallStatus"] for r in callbacks]
    assert statuses == ["initiated", "ringing", "in-progress", "completed"]
    assert [int(r["SequenceNumber"]) for r in callbacks] == [0, 1, 2, 3]
    for request in callbacks:
        assert request.method == "POST"
        assert sim.signature_ok(request), request
        assert request["AccountSid"] == sim.config.account_sid
        assert request["From"] == FROM
        assert request["To"] == "+14155550100"
        assert request["Direction"] == "outbound-api"
        assert request["ApiVersion"] == "2010-04-01"
        assert request["CallbackSource"] == "call-progress-events"
        assert parsedate_to_datetime(request["Timestamp"]).tzinfo is not None
        assert request.get("AnsweredBy") is None  # no machine detection requested
    assert completed["SipResponseCode"] == "200"
    assert int(completed["CallDuration"]) >= 0
    assert completed["Duration"] in ("0", "1")
    assert "CallDuration" not in callbacks[2].params

    # a tampered signature must not validate
    forged = callbacks[0]
    forged.params["CallStatus"] = "completed"
    assert not sim.signature_ok(forged)


async def test_only_terminal_callback_without_events(receiver: Receiver, dial: Dial) -> None:
    call = await dial(status_callback_event=None)
    await receiver.wait_status(call.sid, "completed")
    await asyncio.sleep(0.05)
    assert [r["CallStatus"] for r in receiver.for_call(call.sid)] == ["completed"]
    assert receiver.for_call(call.sid)[0]["SequenceNumber"] == "0"


async def test_get_callbacks_are_signed_over_the_query_string(
    sim: Sim, receiver: Receiver, dial: Dial
) -> None:
    call = await dial(
        status_callback=f"{receiver.url}/status?tenant=acme&x=1",
        status_callback_method="GET",
        status_callback_event=["answered", "completed"],
    )
    await receiver.wait_status(call.sid, "completed")
    callbacks = receiver.for_call(call.sid)
    assert [r["CallStatus"] for r in callbacks] == ["in-progress", "completed"]
    for request in callbacks:
        assert request.method == "GET"
        assert request["tenant"] == "acme"
        assert sim.signature_ok(request)


# talks for a minute: the test ends it (a call that talks TALK_SECONDS may have ended before a
# read made after its in-progress callback)
TALKS_LONG = "+15005550007"


async def test_fetch_reflects_progress(twilio: Client, receiver: Receiver, dial: Dial) -> None:
    call = await dial(TALKS_LONG)
    await receiver.wait_status(call.sid, "in-progress")
    live = await twilio.calls(call.sid).fetch_async()
    assert live.status == "in-progress"
    assert live.start_time is not None
    assert live.end_time is None
    await twilio.calls(call.sid).update_async(status="completed")
    await receiver.wait_status(call.sid, "completed")
    done = await twilio.calls(call.sid).fetch_async()
    assert done.status == "completed"
    assert done.end_time is not None
    assert done.end_time >= done.start_time
    assert isinstance(done.duration, str)
    assert done.duration.isdigit()
    assert done.uri.endswith(f"/Calls/{call.sid}.json")


@pytest.mark.parametrize(
    ("to", "status", "sip"),
    [
        ("+15005550003", "busy", "486"),
        ("+15005550004", "no-answer", "480"),
        ("+15005550006", "failed", "500"),
    ],
)
async def test_unanswered_outcomes(
    twilio: Client, receiver: Receiver, dial: Dial, to: str, status: str, sip: str
) -> None:
    call = await dial(to)
    final = await receiver.wait_status(call.sid, status)
    assert final["SipResponseCode"] == sip
    assert final["CallDuration"] == "0"
    statuses = [r["CallStatus"] for r in receiver.for_call(call.sid)]
    assert "in-progress" not in statuses
    assert ("ringing" in statuses) is (status != "failed")
    fetched = await twilio.calls(call.sid).fetch_async()
    assert fetched.status == status
    assert fetched.duration == "0"


@pytest.mark.parametrize(
    ("to", "detection", "expected"),
    [
        ("+15005550005", "Enable", "machine_start"),
        ("+15005550005", "DetectMessageEnd", "machine_end_beep"),
        ("+14155550100", "Enable", "human"),
        ("+15005550005", None, None),
    ],
)
async def test_answered_by(
    twilio: Client,
    receiver: Receiver,
    dial: Dial,
    to: str,
    detection: str | None,
    expected: str | None,
) -> None:
    call = await dial(to, machine_detection=detection)
    await receiver.wait_status(call.sid, "completed")
    by_status = {r["CallStatus"]: r.get("AnsweredBy") for r in receiver.for_call(call.sid)}
    assert by_status["ringing"] is None
    assert by_status["in-progress"] == expected
    assert by_status["completed"] == expected
    assert (await twilio.calls(call.sid).fetch_async()).answered_by == expected


async def test_async_amd_posts_result_separately(sim: Sim, receiver: Receiver, dial: Dial) -> None:
    call = await dial(
        "+15005550005",
        machine_detection="Enable",
        async_amd="true",
        async_amd_status_callback=f"{receiver.url}/amd",
    )
    await receiver.wait_status(call.sid, "completed")
    answered = next(r for r in receiver.for_call(call.sid) if r["CallStatus"] == "in-progress")
    assert answered.get("AnsweredBy") is None
    [amd] = receiver.for_call(call.sid, "/amd")
    assert amd["AnsweredBy"] == "machine_start"
    assert sim.signature_ok(amd)


@pytest.mark.parametrize(
    ("to", "code"),
    [("+15005550001", 21211), ("+15005550002", 21214), ("555-0100", 21211)],
)
async def test_rejected_numbers(sim: Sim, dial: Dial, to: str, code: int) -> None:
    with pytest.raises(TwilioRestException) as excinfo:
        await dial(to)
    assert excinfo.value.status == 400
    assert excinfo.value.code == code
    state = await sim.state()
    assert state["calls"] == []
    assert state["create_requests"] == 1


async def test_21211_body_matches_twilio(sim: Sim) -> None:
    async with sim.session.post(
        f"{sim.account_uri}/Calls.json",
        data={"To": "+15005550001", "From": FROM, "Url": "https://example.com/t"},
        headers=sim.auth,
    ) as response:
        assert response.status == 400
        assert await response.json() == {
            "code": 21211,
            "message": "The 'To' number +15005550001 is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211",
            "status": 400,
        }


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"From": FROM, "Url": "https://example.com/t"}, 21201),
        ({"To": "+14155550100", "Url": "https://example.com/t"}, 21213),
        ({"To": "+14155550100", "From": FROM}, 21205),
    ],
)
async def test_missing_parameters(sim: Sim, data: dict[str, str], code: int) -> None:
    async with sim.session.post(
        f"{sim.account_uri}/Calls.json", data=data, headers=sim.auth
    ) as response:
        assert response.status == 400
        assert (await response.json())["code"] == code


async def test_authentication_and_account_checks(sim: Sim, twilio: Client) -> None:
    url = f"{sim.account_uri}/Calls.json"
    no_auth: dict[str, str] = {}
    for headers in (no_auth, basic_auth(sim.config.account_sid, "wrong")):
        async with sim.session.get(url, headers=headers) as response:
            assert response.status == 401
            body = await response.json()
            assert (body["code"], body["message"], body["status"]) == (20003, "Authenticate", 401)
            assert body["more_info"]
    other = f"{sim.url}/2010-04-01/Accounts/AC{'1' * 32}/Calls.json"
    async with sim.session.get(other, headers=sim.auth) as response:
        assert response.status == 404
        assert (await response.json())["code"] == 20404
    with pytest.raises(TwilioRestException) as excinfo:
        await twilio.calls("CA" + "0" * 32).fetch_async()
    assert (excinfo.value.status, excinfo.value.code) == (404, 20404)


async def test_list_filters_and_paging(twilio: Client, dial: Dial) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    target = await dial("+14155550111")
    other = await dial("+14155550122")
    third = await dial("+14155550111", status_callback=None, status_callback_event=None)

    found = await twilio.calls.list_async(to="+14155550111", from_=FROM, start_time_after=before)
    assert [c.sid for c in found] == [third.sid, target.sid]  # newest first
    assert all(c.to == "+14155550111" for c in found)

    everything = await twilio.calls.list_async(start_time_after=before, page_size=1)
    assert [c.sid for c in everything] == [third.sid, other.sid, target.sid]
    assert len(await twilio.calls.list_async(limit=2)) == 2

    future = datetime.now(UTC) + timedelta(minutes=5)
    assert await twilio.calls.list_async(start_time_after=future) == []
    assert len(await twilio.calls.list_async(start_time_before=future)) == 3
    assert await twilio.calls.list_async(from_="+19999999999") == []
    # StartTime= is the second a call started (or was created, before it starts), not "now":
    # on a slow machine the calls above started more than a second before this line
    fetched = await twilio.calls(target.sid).fetch_async()
    moment = fetched.start_time or fetched.date_created
    in_that_second = await twilio.calls.list_async(start_time=moment)
    assert target.sid in [c.sid for c in in_that_second]
    later = moment + timedelta(seconds=2)
    assert target.sid not in [c.sid for c in await twilio.calls.list_async(start_time=later)]

    page = await twilio.calls.page_async(to="+14155550111", page_size=1)
    assert [c.sid for c in page] == [third.sid]
    next_page = await page.next_page_async()
    assert next_page is not None
    assert [c.sid for c in next_page] == [target.sid]
    assert await next_page.next_page_async() is None


async def test_status_filter(twilio: Client, receiver: Receiver, dial: Dial) -> None:
    call = await dial(TALKS_LONG)
    await receiver.wait_status(call.sid, "in-progress")
    assert [c.sid for c in await twilio.calls.list_async(status="in-progress")] == [call.sid]
    assert await twilio.calls.list_async(status="completed") == []
    await twilio.calls(call.sid).update_async(status="completed")
    await receiver.wait_status(call.sid, "completed")
    assert [c.sid for c in await twilio.calls.list_async(status="completed")] == [call.sid]
    assert await twilio.calls.list_async(status="in-progress") == []


async def test_a_busy_then_answer_number_is_busy_for_its_first_calls_then_answers(
    sim: Sim, receiver: Receiver, dial: Dial
) -> None:
    to = "+150055500926001"  # busy twice
    for status in ("busy", "busy", "completed"):
        call = await dial(to)
        await receiver.wait_status(call.sid, status)
