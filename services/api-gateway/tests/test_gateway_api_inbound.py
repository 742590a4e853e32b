"""Integration: inbound calls (Twilio's voice webhook) and conversation reports."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import aio_pika
import pytest
from calls_events import ConversationReported, Envelope, InboundCallReceived
from calls_platform import amqp
from calls_platform.eventstore import Checkpoint
from yarl import URL

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import Gateway

pytestmark = pytest.mark.integration


def incoming(gateway: Gateway, to_number: str, call_sid: str | None = None) -> dict[str, str]:
    return {
        "AccountSid": gateway.settings.twilio_account_sid,
        "CallSid": call_sid or "CA" + uuid.uuid4().hex,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": "+14155559999",
        "To": to_number,
    }


async def ring(gateway: Gateway, params: dict[str, str], signed: bool = True) -> Any:
    path = "/webhooks/twilio/voice"
    headers = gateway.signed(path, params) if signed else {}
    return await gateway.client.post(URL(path, encoded=True), data=params, headers=headers)


async def make_agent(gateway: Gateway, org: str) -> dict[str, Any]:
    response = await gateway.post_json(
        "/agents", org, {"name": "Front desk", "phone_number": gateway.number()}
    )
    assert response.status == 201
    agent: dict[str, Any] = await response.json()
    return agent


async def test_incoming_call_to_an_agent_number_is_recorded_and_connected(
    gateway: Gateway, org: str
) -> None:
    agent = await make_agent(gateway, org)
    before = await gateway.head()
    response = await ring(gateway, incoming(gateway, agent["phone_number"]))
    assert response.status == 200
    assert response.content_type == "text/xml"
    twiml = await response.text()
    assert "<Connect><Stream url=" in twiml
    events = [
        e for e in await gateway.events_after(before) if e.event_type == "InboundCallReceived"
    ]
    assert len(events) == 1
    received = events[0].event()
    assert isinstance(received, InboundCallReceived)
    assert events[0].organization_id == org
    assert str(received.agent_id) == agent["id"]
    assert f'value="{received.call_id}"' in twiml

    call = await gateway.get(f"/calls/{received.call_id}", org)
    assert call.status == 200
    body = await call.json()
    assert body["direction"] == "inbound"
    assert body["agent_name"] == "Front desk"


async def test_the_same_incoming_webhook_twice_records_one_call(gateway: Gateway, org: str) -> None:
    agent = await make_agent(gateway, org)
    params = incoming(gateway, agent["phone_number"])
    before = await gateway.head()
    for _ in range(2):
        assert (await ring(gateway, params)).status == 200
    assert len(await gateway.events_after(before)) == 1


async def test_incoming_call_to_an_unknown_number_is_rejected_and_recorded_nowhere(
    gateway: Gateway,
) -> None:
    before = await gateway.head()
    response = await ring(gateway, incoming(gateway, gateway.number()))
    assert response.status == 200
    assert "<Reject" in await response.text()
    assert await gateway.head() == before


async def test_unsigned_incoming_webhook_is_403(gateway: Gateway, org: str) -> None:
    agent = await make_agent(gateway, org)
    before = await gateway.head()
    response = await ring(gateway, incoming(gateway, agent["phone_number"]), signed=False)
    assert response.status == 403
    assert await gateway.head() == before


async def test_status_callback_without_call_id_completes_an_inbound_call(
    gateway: Gateway, org: str
) -> None:
    agent = await make_agent(gateway, org)
    params = incoming(gateway, agent["phone_number"])
    await ring(gateway, params)
    done = {**params, "CallStatus": "completed", "CallDuration": "42", "SequenceNumber": "1"}
    path = "/webhooks/twilio/status"
    response = await gateway.client.post(path, data=done, headers=gateway.signed(path, done))
    assert response.status == 204
    events = await gateway.events_after(0)
    reports = [
        e
        for e in events
        if e.event_type == "CallStatusReported" and e.data["call_sid"] == params["CallSid"]
    ]
    assert len(reports) == 1
    assert reports[0].organization_id == org


CONVERSATION = {
    "transcript": [
        {"role": "agent", "content": "Hi, this is Ava."},
        {"role": "caller", "content": "Not now, thanks."},
    ],
    "provider_usage": {"openai": {"type": "llm", "model": "gpt-4o"}},
    "ended_by": "caller",
}


async def test_conversation_report_is_recorded_and_shown_on_the_call(
    gateway: Gateway, org: str
) -> None:
    call_id = await gateway.place_call(org)
    before = await gateway.head()
    response = await gateway.post_json(f"/calls/{call_id}/conversation", org, CONVERSATION)
    assert response.status == 202
    events = await gateway.events_after(before)
    assert [e.event_type for e in events] == ["ConversationReported"]
    reported = events[0].event()
    assert isinstance(reported, ConversationReported)
    assert reported.ended_by == "caller"

    call = await (await gateway.get(f"/calls/{call_id}", org)).json()
    assert call["transcript"] == CONVERSATION["transcript"]
    assert call["provider_usage"] == CONVERSATION["provider_usage"]


async def test_identical_conversation_report_twice_is_stored_once(
    gateway: Gateway, org: str
) -> None:
    call_id = await gateway.place_call(org)
    before = await gateway.head()
    for _ in range(2):
        response = await gateway.post_json(f"/calls/{call_id}/conversation", org, CONVERSATION)
        assert response.status == 202
    assert len(await gateway.events_after(before)) == 1


async def test_conversation_for_another_organizations_call_is_404(
    gateway: Gateway, org: str, other_org: str
) -> None:
    call_id = await gateway.place_call(org)
    before = await gateway.head()
    response = await gateway.post_json(f"/calls/{call_id}/conversation", other_org, CONVERSATION)
    assert response.status == 404
    assert await gateway.head() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"transcript": "hello"}, "transcript"),
        ({"transcript": [{"role": "agent"}]}, "transcript.0.content"),
        ({"provider_usage": {"openai": {"type": "llm"}}}, "provider_usage.openai.model"),
        ({"ended_by": "nobody"}, "ended_by"),
    ],
)
async def test_invalid_conversation_report_is_422_naming_the_field(
    gateway: Gateway, org: str, body: dict[str, Any], field: str
) -> None:
    call_id = await gateway.place_call(org)
    response = await gateway.post_json(f"/calls/{call_id}/conversation", org, body)
    assert response.status == 422
    fields = {d["field"] for d in (await response.json())["error"]["details"]}
    assert field in fields


async def publish_to_inbox(amqp_url: str, envelope: Envelope) -> None:
    connection = await amqp.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            amqp.INBOX_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        await exchange.publish(amqp.to_message(envelope), routing_key=envelope.event_type)
    finally:
        await connection.close()


async def wait_for_event(
    gateway: Gateway, after: Checkpoint, event_id: uuid.UUID, attempts: int = 100
) -> list[Envelope]:
    for _ in range(attempts):
        events = [e for e in await gateway.events_after(after) if e.event_id == event_id]
        if events:
            return events
        await asyncio.sleep(0.05)
    return []


def conversation_reported(call_id: str, org: str) -> Envelope:
    return Envelope.wrap(
        ConversationReported.model_validate({"call_id": call_id, **CONVERSATION}),
        stream_id=f"call-{call_id}",
        organization_id=org,
    )


async def test_conversation_published_on_the_inbox_is_recorded_once(
    gateway: Gateway, org: str, amqp_url: str
) -> None:
    call_id = await gateway.place_call(org)
    before = await gateway.head()
    envelope = conversation_reported(call_id, org)
    await publish_to_inbox(amqp_url, envelope)
    await publish_to_inbox(amqp_url, envelope)  # redelivered: stored once
    assert len(await wait_for_event(gateway, before, envelope.event_id)) == 1
    await asyncio.sleep(0.3)
    assert [e.event_id for e in await gateway.events_after(before)] == [envelope.event_id]
    call = await (await gateway.get(f"/calls/{call_id}", org)).json()
    assert call["transcript"] == CONVERSATION["transcript"]


async def test_inbox_report_for_another_organizations_call_is_not_recorded(
    gateway: Gateway, org: str, other_org: str, amqp_url: str
) -> None:
    call_id = await gateway.place_call(org)
    before = await gateway.head()
    envelope = conversation_reported(call_id, other_org)
    await publish_to_inbox(amqp_url, envelope)
    # the handler refuses it at once (dead-lettered); a second is ample to see nothing recorded
    assert await wait_for_event(gateway, before, envelope.event_id, attempts=20) == []
