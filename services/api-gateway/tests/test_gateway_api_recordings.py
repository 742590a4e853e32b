"""Integration: Twilio recording callbacks become RecordingReported events, only when signed for
the public URL by our account, and only once per callback; the recording routes' refusals."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Gateway

pytestmark = pytest.mark.integration


def recording_path(call_id: str, org: str) -> str:
    """The callback path and query exactly as the dialer builds them."""
    return f"/webhooks/twilio/recording?call_id={call_id}&org={quote(org, safe='')}"


def callback(gateway: Gateway, status: str = "completed", **extra: str) -> dict[str, str]:
    """The form of a Twilio recording callback for a new recording of a new call SID."""
    recording_sid = "RE" + uuid.uuid4().hex
    params = {
        "AccountSid": gateway.settings.twilio_account_sid,
        "CallSid": "CA" + uuid.uuid4().hex,
        "RecordingSid": recording_sid,
        "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/"
        f"{gateway.settings.twilio_account_sid}/Recordings/{recording_sid}",
        "RecordingStatus": status,
        "RecordingDuration": "42",
        "RecordingChannels": "2",
        "RecordingSource": "OutboundAPI",
        "RecordingStartTime": "Wed, 01 May 2024 12:00:00 +0000",
        "ErrorCode": "0",
    }
    params.update(extra)
    return params


async def test_signed_completed_callback_appends_recording_reported(
    gateway: Gateway, org: str
) -> None:
    call_id = await gateway.place_call(org)
    [requested] = await gateway.stream(f"call-{call_id}")
    params = callback(gateway)
    head = await gateway.head()

    response = await gateway.deliver(recording_path(call_id, org), params)

    assert response.status == 204, await response.text()
    [event] = await gateway.events_after(head)
    assert event.event_type == "RecordingReported"
    assert (event.stream_id, event.organization_id) == (f"call-{call_id}", org)
    assert event.correlation_id == requested.correlation_id
    assert event.data == {
        "call_id": call_id,
        "call_sid": params["CallSid"],
        "recording_sid": params["RecordingSid"],
        "recording_url": params["RecordingUrl"],
        "status": "completed",
        "duration_seconds": 42,
        "channels": 2,
        "source": "OutboundAPI",
        "error_code": 0,
        "reported_via": "callback",
    }


async def test_the_same_recording_callback_twice_is_recorded_once(
    gateway: Gateway, org: str
) -> None:
    call_id = await gateway.place_call(org)
    params = callback(gateway)
    head = await gateway.head()
    for _ in range(2):
        response = await gateway.deliver(recording_path(call_id, org), params)
        assert response.status == 204
    assert [e.event_type for e in await gateway.events_after(head)] == ["RecordingReported"]


async def test_an_absent_recording_is_reported_without_a_url(gateway: Gateway, org: str) -> None:
    call_id = await gateway.place_call(org)
    params = callback(gateway, "absent", RecordingDuration="0")
    del params["RecordingUrl"]
    head = await gateway.head()
    response = await gateway.deliver(recording_path(call_id, org), params)
    assert response.status == 204
    [event] = await gateway.events_after(head)
    assert (event.data["status"], event.data["recording_url"]) == ("absent", None)


async def test_an_in_progress_recording_records_nothing(gateway: Gateway, org: str) -> None:
    call_id = await gateway.place_call(org)
    head = await gateway.head()
    response = await gateway.deliver(recording_path(call_id, org), callback(gateway, "in-progress"))
    assert response.status == 204
    assert await gateway.head() == head


@pytest.mark.parametrize(
    "forgery", ["missing", "signed for other params", "signed for another call"]
)
async def test_forged_recording_callback_is_403_and_records_nothing(
    gateway: Gateway, org: str, forgery: str
) -> None:
    call_id = await gateway.place_call(org)
    path = recording_path(call_id, org)
    params = callback(gateway)
    headers = {
        "missing": {},
        "signed for other params": gateway.signed(
            path, {**params, "RecordingUrl": "https://attacker.example/x"}
        ),
        "signed for another call": gateway.signed(recording_path(str(uuid.uuid4()), org), params),
    }[forgery]
    head = await gateway.head()
    response = await gateway.deliver(path, params, headers)
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden"
    assert await gateway.head() == head


async def test_validly_signed_recording_callback_for_another_account_is_403(
    gateway: Gateway, org: str
) -> None:
    call_id = await gateway.place_call(org)
    params = callback(gateway, AccountSid="AC" + "0" * 32)
    head = await gateway.head()
    response = await gateway.deliver(recording_path(call_id, org), params)
    assert response.status == 403
    assert await gateway.head() == head


async def test_recording_callback_for_an_unknown_call_is_404(
    gateway: Gateway, org: str, other_org: str
) -> None:
    call_id = await gateway.place_call(org)
    head = await gateway.head()
    for path in (recording_path(str(uuid.uuid4()), org), recording_path(call_id, other_org)):
        response = await gateway.deliver(path, callback(gateway))
        assert response.status == 404
    assert await gateway.head() == head


@pytest.mark.parametrize(
    "change",
    [
        {"RecordingSid": "RE../../../etc/passwd"},
        {"RecordingSid": "RE" + "A" * 32},
        {"RecordingSid": ""},
        {"RecordingUrl": "file:///etc/passwd"},
        {"RecordingUrl": ""},  # completed, but nothing to download
        {"RecordingStatus": "exploded"},
        {"RecordingChannels": "7"},
        {"CallSid": ""},
    ],
    ids=lambda change: ",".join(f"{k}={v[:12]}" for k, v in change.items()),
)
async def test_unusable_recording_callback_is_422_and_records_nothing(
    gateway: Gateway, org: str, change: dict[str, str]
) -> None:
    call_id = await gateway.place_call(org)
    params = {**callback(gateway), **change}
    head = await gateway.head()
    response = await gateway.deliver(recording_path(call_id, org), params)
    assert response.status == 422, await response.text()
    assert (await response.json())["error"]["code"] == "validation_error"
    assert await gateway.head() == head


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_recording_of_a_call_id_that_is_not_a_uuid_is_404(
    gateway: Gateway, org: str, method: str
) -> None:
    response = await gateway.client.request(
        method, "/calls/not-a-uuid/recording", headers=gateway.auth(org)
    )
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_recording_while_the_recordings_service_is_down_is_502_json(
    gateway: Gateway, org: str, method: str
) -> None:
    call_id = await gateway.place_call(org)
    response = await gateway.client.request(
        method, f"/calls/{call_id}/recording", headers=gateway.auth(org)
    )
    assert response.status == 502
    assert response.content_type == "application/json"
    assert (await response.json())["error"]["message"] == "recordings service unavailable"
