"""Integration: Twilio status callbacks become CallStatusReported events, only when signed for
the public URL by our account, and only once per callback."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from gateway.__main__ import create_app
from prometheus_client import REGISTRY
from twilio.request_validator import RequestValidator

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Gateway

pytestmark = pytest.mark.integration


def status_path(call_id: str, org: str) -> str:
    """The callback path and query exactly as the dialer builds them."""
    return f"/webhooks/twilio/status?call_id={call_id}&org={quote(org, safe='')}"


def callback(
    gateway: Gateway, status: str = "ringing", sequence: int = 1, **extra: str
) -> dict[str, str]:
    """The form of a Twilio status callback for a new call SID (override with CallSid=...)."""
    params = {
        "AccountSid": gateway.settings.twilio_account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": "CA" + uuid.uuid4().hex,
        "CallStatus": status,
        "Direction": "outbound-api",
        "From": "+14155550100",
        "To": "+14155550101",
        "SequenceNumber": str(sequence),
        "Timestamp": format_datetime(datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)),
    }
    params.update(extra)
    return params


async def test_signed_callback_is_204_and_appends_call_status_reported(
    gateway: Gateway, org: str
) -> None:
    call_id = await gateway.place_call(org)
    [requested] = await gateway.stream(f"call-{call_id}")
    params = callback(
        gateway,
        "completed",
        3,
        CallDuration="42",
        AnsweredBy="human",
        SipResponseCode="200",
    )
    head = await gateway.head()
    response = await gateway.deliver(status_path(call_id, org), params)
    assert response.status == 204, await response.text()

    [event] = await gateway.events_after(head)
    assert event.event_type == "CallStatusReported"
    assert event.stream_id == f"call-{call_id}"
    assert event.organization_id == org
    assert event.correlation_id == requested.correlation_id
    assert event.data == {
        "call_id": call_id,
        "call_sid": params["CallSid"],
        "carrier_status": "completed",
        "sequence_number": 3,
        "duration_seconds": 42,
        "answered_by": "human",
        "sip_response_code": 200,
        "reported_at": "2024-05-01T12:00:00Z",
        "source": "callback",
    }

    call = await (await gateway.get(f"/calls/{call_id}", org)).json()
    assert (call["status"], call["outcome"], call["duration"]) == ("completed", "completed", 42)


async def test_the_same_callback_twice_is_recorded_once(gateway: Gateway, org: str) -> None:
    call_id = await gateway.place_call(org)
    params = callback(gateway, "ringing", 1)
    head = await gateway.head()
    counted = (
        REGISTRY.get_sample_value("events_appended_total", {"type": "CallStatusReported"}) or 0
    )
    for _ in range(2):
        response = await gateway.deliver(status_path(call_id, org), params)
        assert response.status == 204
    assert [e.event_type for e in await gateway.events_after(head)] == ["CallStatusReported"]
    # the repeat is not counted as an event appended
    assert (
        REGISTRY.get_sample_value("events_appended_total", {"type": "CallStatusReported"})
        == counted + 1
    )


async def test_successive_statuses_are_each_recorded(gateway: Gateway, org: str) -> None:
    call_id = await gateway.place_call(org)
    call_sid = "CA" + uuid.uuid4().hex
    head = await gateway.head()
    for sequence, status in enumerate(["initiated", "ringing", "in-progress", "completed"]):
        params = callback(gateway, status, sequence, CallSid=call_sid)
        response = await gateway.deliver(status_path(call_id, org), params)
        assert response.status == 204
    events = await gateway.events_after(head)
    assert [e.data["carrier_status"] for e in events] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]


def _forgeries(gateway: Gateway, path: str, params: dict[str, str]) -> dict[str, dict[str, str]]:
    host_url = str(gateway.client.make_url("")).rstrip("/") + path
    wrong_token = RequestValidator("not-our-auth-token").compute_signature(
        gateway.settings.public_base_url + path, params
    )
    return {
        "missing": {},
        "empty": {"X-Twilio-Signature": ""},
        "garbage": {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        "another auth token": {"X-Twilio-Signature": wrong_token},
        "signed for the host, not the public URL": {
            "X-Twilio-Signature": RequestValidator(
                gateway.settings.twilio_auth_token
            ).compute_signature(host_url, params)
        },
        "signed for other params": gateway.signed(path, {**params, "CallStatus": "ringing"}),
        "signed for another query": gateway.signed(path + "&x=1", params),
    }


FORGERIES = [
    "missing",
    "empty",
    "garbage",
    "another auth token",
    "signed for the host, not the public URL",
    "signed for other params",
    "signed for another query",
]


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_bad_signature_is_403_and_records_nothing(
    gateway: Gateway, org: str, forgery: str
) -> None:
    call_id = await gateway.place_call(org)
    path = status_path(call_id, org)
    params = callback(gateway, "completed", 9, CallDuration="5")
    head = await gateway.head()
    response = await gateway.deliver(path, params, _forgeries(gateway, path, params)[forgery])
    assert response.status == 403
    error = (await response.json())["error"]
    assert error == {"code": "forbidden", "message": "invalid Twilio signature"}
    assert await gateway.head() == head


@pytest.mark.parametrize("account_sid", ["AC" + "0" * 32, None])
async def test_validly_signed_callback_for_another_account_is_403(
    gateway: Gateway, org: str, account_sid: str | None
) -> None:
    call_id = await gateway.place_call(org)
    params = callback(gateway)
    if account_sid is None:
        del params["AccountSid"]
    else:
        params["AccountSid"] = account_sid
    head = await gateway.head()
    response = await gateway.deliver(status_path(call_id, org), params)
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden"
    assert await gateway.head() == head


async def test_unknown_call_for_the_org_is_404(gateway: Gateway, org: str, other_org: str) -> None:
    call_id = await gateway.place_call(org)
    head = await gateway.head()
    for path in (status_path(str(uuid.uuid4()), org), status_path(call_id, other_org)):
        response = await gateway.deliver(path, callback(gateway))
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"
    assert await gateway.head() == head


UNUSABLE = {
    "call_id not a uuid": ("/webhooks/twilio/status?call_id=not-a-uuid&org=x", {}),
    "unknown CallStatus": (None, {"CallStatus": "answered"}),
    "empty CallStatus": (None, {"CallStatus": ""}),
    "empty CallSid": (None, {"CallSid": ""}),
}


@pytest.mark.parametrize(("path", "params"), UNUSABLE.values(), ids=UNUSABLE.keys())
async def test_signed_but_unusable_callback_is_422(
    gateway: Gateway, org: str, path: str | None, params: dict[str, str]
) -> None:
    call_id = await gateway.place_call(org)
    head = await gateway.head()
    response = await gateway.deliver(
        path or status_path(call_id, org), {**callback(gateway), **params}
    )
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "validation_error"
    assert await gateway.head() == head


async def test_callback_without_call_id_for_an_unknown_inbound_sid_is_404(
    gateway: Gateway, org: str
) -> None:
    head = await gateway.head()
    response = await gateway.deliver("/webhooks/twilio/status", callback(gateway))
    assert response.status == 404
    assert await gateway.head() == head


async def test_reports_on_different_calls_are_never_conflated(gateway: Gateway, org: str) -> None:
    """Deduplication is per call: identical report fields on two calls are two events."""
    first, second = await gateway.place_call(org), await gateway.place_call(org)
    params = callback(gateway, "ringing", 1)
    head = await gateway.head()
    for call_id in (first, second):
        response = await gateway.deliver(status_path(call_id, org), params)
        assert response.status == 204
    events = await gateway.events_after(head)
    assert [e.stream_id for e in events] == [f"call-{first}", f"call-{second}"]


async def test_repeated_parameter_is_signed_over_every_value(gateway: Gateway, org: str) -> None:
    """Twilio appends each value of a repeated parameter, sorted, after its name."""
    call_id = await gateway.place_call(org)
    path = status_path(call_id, org)
    fields = [
        *callback(gateway).items(),
        ("StirVerstat", "TN-Validation-Passed-A"),
        ("StirVerstat", "B"),
    ]
    signing = {name: [v for n, v in fields if n == name] for name, _ in fields}

    class MultiValued(dict[str, list[str]]):
        def getall(self, name: str) -> list[str]:
            return self[name]

    signature = RequestValidator(gateway.settings.twilio_auth_token).compute_signature(
        gateway.settings.public_base_url + path, MultiValued(signing)
    )
    head = await gateway.head()
    response = await gateway.deliver(path, fields, {"X-Twilio-Signature": signature})
    assert response.status == 204, await response.text()
    assert len(await gateway.events_after(head)) == 1


async def test_org_needing_percent_encoding_round_trips(gateway: Gateway) -> None:
    """The signature covers the query exactly as sent, escapes included."""
    org = f"acme:eu/{uuid.uuid4().hex[:8]} & co"
    call_id = await gateway.place_call(org)
    path = status_path(call_id, org)
    assert "%3A" in path
    assert "%2F" in path
    response = await gateway.deliver(path, callback(gateway))
    assert response.status == 204, await response.text()
    call = await (await gateway.get(f"/calls/{call_id}", org)).json()
    assert (call["status"], call["carrier_status"]) == ("in-progress", "ringing")


async def test_timestamp_without_zone_is_read_as_utc(gateway: Gateway, org: str) -> None:
    call_id = await gateway.place_call(org)
    params = callback(gateway, Timestamp="Wed, 01 May 2024 12:00:00 -0000")
    head = await gateway.head()
    response = await gateway.deliver(status_path(call_id, org), params)
    assert response.status == 204
    [event] = await gateway.events_after(head)
    reported_at = datetime.fromisoformat(event.data["reported_at"])
    assert reported_at == datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


async def test_negative_duration_is_422_naming_it(gateway: Gateway, org: str) -> None:
    call_id = await gateway.place_call(org)
    head = await gateway.head()
    params = callback(gateway, "completed", 2, CallDuration="-1")
    response = await gateway.deliver(status_path(call_id, org), params)
    assert response.status == 422
    error = (await response.json())["error"]
    assert [d["field"] for d in error["details"]] == ["duration_seconds"]
    assert await gateway.head() == head


async def test_non_numeric_optional_numbers_are_recorded_as_absent(
    gateway: Gateway, org: str
) -> None:
    call_id = await gateway.place_call(org)
    head = await gateway.head()
    params = callback(gateway, "completed", 2, CallDuration="soon", SipResponseCode="")
    params["SequenceNumber"] = "x"
    response = await gateway.deliver(status_path(call_id, org), params)
    assert response.status == 204
    [event] = await gateway.events_after(head)
    assert event.data["duration_seconds"] is None
    assert event.data["sequence_number"] is None
    assert event.data["sip_response_code"] is None


async def test_signature_over_the_url_with_its_default_port_is_accepted(
    gateway: Gateway, org: str
) -> None:
    """Twilio may sign https://host:443/…; the validator accepts either form."""
    call_id = await gateway.place_call(org)
    path = status_path(call_id, org)
    params = callback(gateway)
    with_port = gateway.settings.public_base_url + ":443" + path
    signature = RequestValidator(gateway.settings.twilio_auth_token).compute_signature(
        with_port, params
    )
    head = await gateway.head()
    response = await gateway.deliver(path, params, {"X-Twilio-Signature": signature})
    assert response.status == 204
    assert len(await gateway.events_after(head)) == 1


async def _gateway_with(gateway: Gateway, **settings: Any) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(
        TestServer(
            create_app(dataclasses.replace(gateway.settings, **settings)),
            host="127.0.0.1",
            port=0,
        )
    )
    await client.start_server()
    return client


async def test_without_an_auth_token_no_callback_verifies(gateway: Gateway, org: str) -> None:
    """An empty key is one anybody can sign with: a gateway with no token trusts no callback."""
    client = await _gateway_with(gateway, twilio_auth_token="")
    try:
        call_id = await gateway.place_call(org)
        path = status_path(call_id, org)
        params = callback(gateway)
        url = gateway.settings.public_base_url + path
        signature = RequestValidator("").compute_signature(url, params)
        head = await gateway.head()
        response = await client.post(path, data=params, headers={"X-Twilio-Signature": signature})
        assert response.status == 403
        assert await gateway.head() == head
    finally:
        await client.close()


async def test_the_previous_auth_token_verifies_while_rotating(gateway: Gateway, org: str) -> None:
    new_token = "rotated-" + uuid.uuid4().hex
    client = await _gateway_with(
        gateway,
        twilio_auth_token=new_token,
        twilio_previous_auth_token=gateway.settings.twilio_auth_token,
    )
    try:
        call_id = await gateway.place_call(org)
        path = status_path(call_id, org)
        url = gateway.settings.public_base_url + path
        for token, sequence in ((gateway.settings.twilio_auth_token, 1), (new_token, 2)):
            params = callback(gateway, sequence=sequence)
            signature = RequestValidator(token).compute_signature(url, params)
            response = await client.post(
                path, data=params, headers={"X-Twilio-Signature": signature}
            )
            assert response.status == 204, token
    finally:
        await client.close()
