"""The carrier port's Twilio adapter: the real twilio library against the carrier simulator,
and how REST errors are classified."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from calls_testing.simulator import LocalSimulator
from dialer.carrier import Ambiguous, DialRequest, Placed, Rejected, Throttled, Unsent
from dialer.twilio_carrier import (
    TwilioCarrier,
    carrier_message,
    classify_rest_error,
    stream_twiml,
)

FROM_NUMBER = "+15017122661"


def request_to(to_number: str, *, record: bool = False) -> DialRequest:
    return DialRequest(
        call_id=str(uuid.uuid4()),
        organization_id="org a/1",
        to_number=to_number,
        from_number=FROM_NUMBER,
        record=record,
    )


# --- classify_rest_error (pure) ---------------------------------------------------------------


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (429, None), (400, 20429)])
def test_too_many_requests_is_throttled(status: int, code: int | None) -> None:
    assert classify_rest_error(status, code, "Too Many Requests") == Throttled("Too Many Requests")


def test_invalid_number_is_rejected_with_the_carrier_code() -> None:
    result = classify_rest_error(400, 21211, "The 'To' number is not a valid phone number.")
    assert result == Rejected(
        code=21211, message="The 'To' number is not a valid phone number.", http_status=400
    )


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_ambiguous(status: int) -> None:
    result = classify_rest_error(status, 20500, "Internal Server Error")
    assert isinstance(result, Ambiguous)
    assert str(status) in result.message


# --- TwilioCarrier against the simulator ------------------------------------------------------


async def test_create_call_is_placed_with_a_call_sid(
    carrier: TwilioCarrier, sim: LocalSimulator
) -> None:
    request = request_to("+14155550100", record=True)
    result = await carrier.create_call(request)

    assert isinstance(result, Placed)
    assert result.call_sid.startswith("CA")
    assert len(result.call_sid) == 34
    [call] = await sim.calls()
    assert call["sid"] == result.call_sid
    assert (call["to"], call["from"]) == ("+14155550100", FROM_NUMBER)
    params = call["params"]
    assert params["MachineDetection"] == "Enable"
    assert params["Record"] == "true"
    assert params["RecordingChannels"] == "dual"
    assert params["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert 'value="' + request.call_id + '"' in params["Twiml"]
    callback = urlsplit(call["status_callback"])
    assert callback.path == "/webhooks/twilio/status"
    assert parse_qs(callback.query) == {"call_id": [request.call_id], "org": ["org a/1"]}
    recording = urlsplit(params["RecordingStatusCallback"])
    assert recording.path == "/webhooks/twilio/recording"
    assert parse_qs(recording.query) == {"call_id": [request.call_id], "org": ["org a/1"]}
    assert params["RecordingStatusCallbackEvent"] == ["completed", "absent"]
    assert params["RecordingStatusCallbackMethod"] == "POST"


async def test_a_call_not_to_be_recorded_asks_for_no_recording(
    carrier: TwilioCarrier, sim: LocalSimulator
) -> None:
    await carrier.create_call(request_to("+14155550109", record=False))
    [call] = await sim.calls("+14155550109")
    assert not {"Record", "RecordingChannels", "RecordingStatusCallback"} & set(call["params"])


async def test_invalid_number_is_rejected_with_code_21211(carrier: TwilioCarrier) -> None:
    result = await carrier.create_call(request_to("+15005550001"))
    assert isinstance(result, Rejected)
    assert (result.code, result.http_status) == (21211, 400)
    # the carrier's own message, without the library's "Unable to create record: "
    assert result.message == "The 'To' number +15005550001 is not a valid phone number."


async def test_unreachable_number_is_rejected_with_code_21214(carrier: TwilioCarrier) -> None:
    result = await carrier.create_call(request_to("+15005550002"))
    assert isinstance(result, Rejected)
    assert result.code == 21214


async def test_429_is_throttled_and_creates_nothing(
    carrier: TwilioCarrier, sim: LocalSimulator
) -> None:
    await sim.fault_next_creates({"status": 429, "code": 20429, "message": "Too Many Requests"})
    result = await carrier.create_call(request_to("+14155550101"))
    assert isinstance(result, Throttled)
    assert await sim.calls() == []


async def test_500_after_the_call_was_created_is_ambiguous(
    carrier: TwilioCarrier, sim: LocalSimulator
) -> None:
    await sim.fault_next_creates({"status": 500, "call_created": True})
    result = await carrier.create_call(request_to("+14155550102"))
    assert isinstance(result, Ambiguous)
    assert len(await sim.calls("+14155550102")) == 1


async def test_no_answer_within_the_carrier_timeout_is_ambiguous(
    make_carrier: Callable[..., TwilioCarrier], sim: LocalSimulator
) -> None:
    carrier = make_carrier(timeout_seconds=0.5)
    await sim.fault_next_creates({"timeout_seconds": 5})
    result = await carrier.create_call(request_to("+14155550103"))
    assert isinstance(result, Ambiguous)
    assert len(await sim.calls("+14155550103")) == 1  # it did create the call


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A port that is bound but not listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_connection_refused_is_unsent(
    make_carrier: Callable[..., TwilioCarrier], refusing_url: str
) -> None:
    carrier = make_carrier(api_url=refusing_url)
    result = await carrier.create_call(request_to("+14155550104"))
    assert isinstance(result, Unsent)


async def test_find_calls_finds_the_created_call_by_to_from_and_since(
    carrier: TwilioCarrier,
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    placed = await carrier.create_call(request_to("+14155550105"))
    other = await carrier.create_call(request_to("+14155550106"))
    assert isinstance(placed, Placed)
    assert isinstance(other, Placed)

    found = await carrier.find_calls(
        to_number="+14155550105", from_number=FROM_NUMBER, since=before
    )
    assert [c.sid for c in found] == [placed.call_sid]
    assert found[0].status in {"queued", "initiated", "ringing", "in-progress", "completed"}

    later = datetime.now(UTC) + timedelta(seconds=5)
    assert (
        await carrier.find_calls(to_number="+14155550105", from_number=FROM_NUMBER, since=later)
        == []
    )
    assert (
        await carrier.find_calls(to_number="+14155550105", from_number="+15550000000", since=before)
        == []
    )


async def test_find_calls_accepts_since_in_any_time_zone(carrier: TwilioCarrier) -> None:
    # PostgreSQL hands timestamptz back in the session's time zone, which need not be UTC
    tokyo = timezone(timedelta(hours=9))
    since = datetime.now(tokyo) - timedelta(seconds=5)
    placed = await carrier.create_call(request_to("+14155550107"))
    assert isinstance(placed, Placed)

    found = await carrier.find_calls(to_number="+14155550107", from_number=FROM_NUMBER, since=since)
    assert [c.sid for c in found] == [placed.call_sid]


async def test_find_calls_lists_newest_first(carrier: TwilioCarrier) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    first = await carrier.create_call(request_to("+14155550108"))
    second = await carrier.create_call(request_to("+14155550108"))
    assert isinstance(first, Placed)
    assert isinstance(second, Placed)
    found = await carrier.find_calls(to_number="+14155550108", from_number=FROM_NUMBER, since=since)
    assert [c.sid for c in found] == [second.call_sid, first.call_sid]


def test_carrier_message_drops_the_librarys_prefix_only() -> None:
    assert carrier_message("Unable to create record: Number is busy") == "Number is busy"
    assert carrier_message("Number is busy") == "Number is busy"


# --- variables in the TwiML -------------------------------------------------------------------


def test_the_stream_twiml_names_the_call_and_each_variable_escaped() -> None:
    twiml = stream_twiml(
        "wss://agent/s?a=1&b=2", "c-1", {"first_name": 'Ada "the" <Countess>', "call_id": "x"}
    )
    assert twiml == (
        '<Response><Connect><Stream url="wss://agent/s?a=1&amp;b=2">'
        '<Parameter name="call_id" value="c-1"/>'
        '<Parameter name="first_name" value=\'Ada "the" &lt;Countess&gt;\'/>'
        "</Stream></Connect></Response>"
    )


@pytest.mark.integration
async def test_a_calls_variables_reach_the_carrier_in_its_twiml(
    carrier: TwilioCarrier, sim: LocalSimulator
) -> None:
    request = DialRequest(
        call_id=str(uuid.uuid4()),
        organization_id="org_a",
        to_number="+14155550142",
        from_number=FROM_NUMBER,
        record=False,
        variables={"first_name": "Ada", "order_id": "A-1042"},
    )
    assert isinstance(await carrier.create_call(request), Placed)
    [call] = await sim.calls("+14155550142")
    twiml = call["params"]["Twiml"]
    assert f'<Parameter name="call_id" value="{request.call_id}"/>' in twiml
    assert '<Parameter name="first_name" value="Ada"/>' in twiml
    assert '<Parameter name="order_id" value="A-1042"/>' in twiml
