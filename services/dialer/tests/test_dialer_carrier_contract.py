"""The Carrier port's contract, run against both implementations: the in-memory FakeCarrier
the dialer's unit tests use, and the Twilio adapter (the real twilio library) against the
carrier simulator. What one of them does, the other does too, so a test passing on the fake
says something about the real carrier."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from calls_testing import unique_number
from calls_testing.receiver import Receiver
from calls_testing.simulator import LocalSimulator, local_simulator
from carrier_sim import SimConfig
from dialer.carrier import CancelRefused, Carrier, CarrierCall, DialRequest, Placed
from dialer.fake_carrier import FakeCarrier
from dialer.twilio_carrier import TwilioCarrier

pytestmark = pytest.mark.integration

FROM_NUMBER = "+15017122661"


@pytest.fixture
async def sim(receiver: Receiver) -> AsyncIterator[LocalSimulator]:
    # calls ring for a minute: what the contract cancels is still ringing when it does
    async with local_simulator(SimConfig(ring_seconds=60, talk_seconds=0.1)) as sim:
        yield sim


@pytest.fixture(params=["fake", "twilio"])
async def carrier(
    request: pytest.FixtureRequest, make_carrier: Callable[..., TwilioCarrier]
) -> Carrier:
    # the twilio library's client needs the running loop, hence async, and the simulator
    # started for both (an async fixture cannot set up another async fixture by name)
    if request.param == "fake":
        return FakeCarrier()
    return make_carrier()


def dial_request(to_number: str | None = None) -> DialRequest:
    return DialRequest(
        call_id=str(uuid.uuid4()),
        organization_id="org_contract",
        to_number=to_number or unique_number(),
        from_number=FROM_NUMBER,
        record=False,
    )


async def placed(carrier: Carrier, request: DialRequest | None = None) -> str:
    result = await carrier.create_call(request or dial_request())
    assert isinstance(result, Placed), result
    return result.call_sid


async def test_a_placed_call_has_a_call_sid_and_is_fetched_by_it(carrier: Carrier) -> None:
    sid = await placed(carrier)

    assert sid.startswith("CA")
    assert len(sid) == 34
    fetched = await carrier.fetch_call(sid)
    assert fetched.sid == sid
    assert fetched.status in {"queued", "ringing"}
    assert fetched.end_time is None


async def test_a_placed_call_is_found_by_its_numbers_and_no_other_call_is(
    carrier: Carrier,
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    request = dial_request()
    sid = await placed(carrier, request)
    await placed(carrier)  # another number's

    found = await carrier.find_calls(
        to_number=request.to_number, from_number=FROM_NUMBER, since=since
    )
    assert [c.sid for c in found] == [sid]
    elsewhere = await carrier.find_calls(
        to_number=unique_number(), from_number=FROM_NUMBER, since=since
    )
    assert elsewhere == []


async def test_a_ringing_call_is_canceled_and_stays_canceled(carrier: Carrier) -> None:
    sid = await placed(carrier)

    answer = await carrier.cancel_call(sid)

    assert isinstance(answer, CarrierCall)
    assert (answer.sid, answer.status) == (sid, "canceled")
    assert (await carrier.fetch_call(sid)).status == "canceled"


async def test_a_call_that_has_ended_is_not_canceled_and_the_carrier_says_why(
    carrier: Carrier,
) -> None:
    sid = await placed(carrier)
    assert isinstance(await carrier.cancel_call(sid), CarrierCall)

    answer = await carrier.cancel_call(sid)

    assert answer == CancelRefused(code=21220, message="Call is not in-progress. Cannot redirect.")
    assert (await carrier.fetch_call(sid)).status == "canceled"


async def test_a_call_placed_without_recording_lists_no_recordings(carrier: Carrier) -> None:
    sid = await placed(carrier)

    assert await carrier.list_recordings(sid) == []
