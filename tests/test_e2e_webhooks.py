"""Customer webhooks end to end: every service as a real process, and a real HTTP receiver in
the test. A call's events arrive signed (verified with the `standardwebhooks` library, as a
customer would), in order, once; a receiver that is down, failing or slow; secret rotation;
the delivery log, redelivery and replay."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from calls_testing import unique_number, wait_until
from calls_testing.system import System
from standardwebhooks.webhooks import Webhook

from tests.conftest import Received, Receiver
from tests.conftest import place_call as post_call

pytestmark = pytest.mark.integration

CALL_EVENTS = ["call.queued", "call.initiated", "call.answered", "call.ended"]
# how long the receiver stays down in the outage test (the figure)
DOWN_SECONDS = 60


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


def new_org() -> str:
    return f"org_wh_{uuid.uuid4().hex[:8]}"


async def create_endpoint(
    http: aiohttp.ClientSession, system: System, org: str, url: str, events: list[str]
) -> dict[str, Any]:
    async with http.post(
        f"{system.gateway}/webhook-endpoints",
        json={"url": url, "events": events, "description": "e2e"},
        headers=system.auth(org),
    ) as r:
        assert r.status == 201, await r.text()
        endpoint: dict[str, Any] = await r.json()
    assert endpoint["secret"].startswith("whsec_")
    return endpoint


async def place_call(
    http: aiohttp.ClientSession, system: System, org: str, to_number: str | None = None
) -> str:
    return await post_call(
        http, system, org, to_number=to_number or unique_number(), from_number="+14155550199"
    )


async def until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def deliveries(
    http: aiohttp.ClientSession, system: System, org: str, endpoint_id: str, **query: str
) -> dict[str, Any]:
    async with http.get(
        f"{system.gateway}/webhook-endpoints/{endpoint_id}/deliveries",
        params=query,
        headers=system.auth(org),
    ) as r:
        assert r.status == 200, await r.text()
        page: dict[str, Any] = await r.json()
        return page


async def logged(
    http: aiohttp.ClientSession,
    system: System,
    org: str,
    endpoint_id: str,
    settled: Callable[[list[dict[str, Any]]], bool],
    what: str,
    **query: str,
) -> list[dict[str, Any]]:
    """The endpoint's delivery log once `settled` holds for its items.

    The webhooks service records an attempt after the receiver has answered, so a test that has
    seen a message arrive waits for its attempt to be in the log before it reads the log.
    """
    items: list[dict[str, Any]] = []

    async def holds() -> bool:
        nonlocal items
        items = (await deliveries(http, system, org, endpoint_id, **query))["items"]
        return settled(items)

    await wait_until(holds, within=30, what=what)
    return items


def verify(secret: str, message: Received) -> dict[str, Any]:
    payload: dict[str, Any] = Webhook(secret).verify(message.body, message.headers)
    return payload


async def test_every_event_of_a_call_arrives_signed_in_order_and_once(
    system: System, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    org = new_org()
    endpoint = await create_endpoint(
        http, system, org, receiver.url, [*CALL_EVENTS, "recording.ready"]
    )
    call_id = await place_call(http, system, org)

    await until(
        lambda: "recording.ready" in [m.json["type"] for m in receiver.of_call(call_id)],
        90,  # the recording is downloaded and stored first: slow on a loaded machine
        "the call's recording.ready",
    )
    await asyncio.sleep(1.5)  # anything sent twice would have come by now
    messages = receiver.of_call(call_id)
    types = [m.json["type"] for m in messages]
    assert types[:4] == CALL_EVENTS, types
    assert sorted(types) == sorted([*CALL_EVENTS, "recording.ready"]), types
    ids = [m.headers["webhook-id"] for m in messages]
    assert len(set(ids)) == len(ids), "a message arrived twice"
    for message in messages:
        payload = verify(endpoint["secret"], message)  # raises unless signed with the secret
        assert payload["id"] == message.headers["webhook-id"]
        assert set(payload) == {"id", "type", "created_at", "data"}
        assert payload["data"]["call_id"] == call_id
        assert message.headers["webhook-signature"].startswith("v1,")
    # data is the call as GET shows it when the event was turned into a message
    ended = next(m.json for m in messages if m.json["type"] == "call.ended")
    assert ended["data"]["status"] == "completed"
    assert ended["data"]["outcome"] == "completed"
    assert ended["data"]["duration"] is not None
    assert "error_reason" in ended["data"]
    # the log shows each delivered, with its one attempt
    items = await logged(
        http,
        system,
        org,
        endpoint["id"],
        lambda items: len(items) == 5 and all(i["status"] == "delivered" for i in items),
        "five deliveries logged as delivered",
        call_id=call_id,
    )
    for item in items:
        assert len(item["attempts"]) == 1
        assert item["attempts"][0]["response_status"] == 200
        assert item["attempts"][0]["response_body_excerpt"] == "answer 200"
        assert item["attempts"][0]["latency_ms"] >= 0


async def test_a_call_that_cannot_be_placed_ends_with_call_failed(
    system: System, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    org = new_org()
    await create_endpoint(
        http, system, org, receiver.url, ["call.queued", "call.ended", "call.failed"]
    )
    call_id = await place_call(http, system, org, "+15005550001")  # invalid number
    await until(lambda: len(receiver.of_call(call_id)) >= 2, 30, "call.failed")
    await asyncio.sleep(1)
    types = [m.json["type"] for m in receiver.of_call(call_id)]
    assert types == ["call.queued", "call.failed"]
    failed = receiver.of_call(call_id)[1].json["data"]
    assert failed["status"] == "failed"
    assert failed["error_reason"]


async def test_receiver_down_then_back_gets_every_event_in_order(
    system: System, http: aiohttp.ClientSession
) -> None:
    receiver = Receiver()  # not started: connection refused
    org = new_org()
    endpoint = await create_endpoint(http, system, org, receiver.url, CALL_EVENTS)
    calls = [await place_call(http, system, org) for _ in range(3)]
    await asyncio.sleep(DOWN_SECONDS)
    await receiver.start()
    try:
        await until(
            lambda: all(len(receiver.of_call(c)) >= 4 for c in calls), 60, "every call's events"
        )
        await asyncio.sleep(1.5)
        for call_id in calls:
            types = [m.json["type"] for m in receiver.of_call(call_id)]
            assert types == CALL_EVENTS, (call_id, types)
            for message in receiver.of_call(call_id):
                verify(endpoint["secret"], message)
        items = await logged(
            http,
            system,
            org,
            endpoint["id"],
            lambda items: all(item["status"] == "delivered" for item in items),
            "every delivery logged as delivered",
            page_size="100",
        )
        assert len(items) == 12
        # the first of each call waited out the outage: its failed attempts are in the log
        queued = [item for item in items if item["event_type"] == "call.queued"]
        for item in queued:
            failed = [a for a in item["attempts"] if a["response_status"] is None]
            assert len(failed) >= 3, item["attempts"]
            assert all(a["error"] for a in failed)
            assert item["attempts"][-1]["response_status"] == 200
    finally:
        await receiver.stop()


async def test_500_three_times_then_200_is_four_attempts(
    system: System, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receiver.answer = lambda n: (500, 0.0) if n <= 3 else (200, 0.0)
    org = new_org()
    endpoint = await create_endpoint(http, system, org, receiver.url, ["call.queued"])
    call_id = await place_call(http, system, org)
    await until(lambda: len(receiver.of_call(call_id)) >= 4, 30, "four attempts")
    await asyncio.sleep(1.0)
    assert len(receiver.of_call(call_id)) == 4
    # the same message each time (receivers deduplicate on webhook-id)
    assert len({m.headers["webhook-id"] for m in receiver.of_call(call_id)}) == 1
    (item,) = await logged(
        http,
        system,
        org,
        endpoint["id"],
        lambda items: len(items) == 1 and items[0]["status"] == "delivered",
        "the delivery logged as delivered",
        call_id=call_id,
    )
    assert [a["response_status"] for a in item["attempts"]] == [500, 500, 500, 200]
    assert [a["number"] for a in item["attempts"]] == [1, 2, 3, 4]


async def test_410_is_not_retried(
    system: System, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receiver.answer = lambda n: (410, 0.0)
    org = new_org()
    endpoint = await create_endpoint(http, system, org, receiver.url, ["call.queued", "call.ended"])
    call_id = await place_call(http, system, org)
    # the refused call.queued is given up at once, so call.ended (next in order) goes out too
    await until(lambda: len(receiver.of_call(call_id)) >= 2, 30, "both messages")
    await asyncio.sleep(3)  # past two retry intervals: nothing more comes
    assert [m.json["type"] for m in receiver.of_call(call_id)] == ["call.queued", "call.ended"]
    items = await logged(
        http,
        system,
        org,
        endpoint["id"],
        lambda items: len(items) == 2,
        "both deliveries logged as failed",
        status="failed",
    )
    for item in items:
        assert [a["response_status"] for a in item["attempts"]] == [410]
        assert "not retried" in item["last_error"]


async def test_a_slow_receiver_does_not_delay_another_endpoint(
    system: System, http: aiohttp.ClientSession
) -> None:
    slow, fast = Receiver(), Receiver()
    # longer than the sender's 15 s timeout: the slow endpoint never gets past its first
    # message while the test runs (that message may be sent again after a timeout)
    slow.answer = lambda n: (200, 60.0)
    await slow.start()
    await fast.start()
    org = new_org()
    try:
        slow_endpoint = await create_endpoint(http, system, org, slow.url, CALL_EVENTS)
        await create_endpoint(http, system, org, fast.url, CALL_EVENTS)
        call_id = await place_call(http, system, org)
        await until(lambda: len(fast.of_call(call_id)) >= 4, 30, "the fast endpoint's messages")
        # the fast endpoint got every message while the slow one is still on its first (each
        # endpoint's messages go in order, one at a time)
        assert len({m.headers["webhook-id"] for m in slow.of_call(call_id)}) == 1
        assert slow.of_call(call_id)[0].json["type"] == CALL_EVENTS[0]
        assert [m.json["type"] for m in fast.of_call(call_id)] == CALL_EVENTS
        async with http.delete(
            f"{system.gateway}/webhook-endpoints/{slow_endpoint['id']}", headers=system.auth(org)
        ) as r:
            assert r.status == 204
    finally:
        await slow.stop()
        await fast.stop()


async def test_rotating_the_secret_signs_with_both_during_the_grace(
    system: System, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    org = new_org()
    endpoint = await create_endpoint(http, system, org, receiver.url, ["call.queued"])
    async with http.post(
        f"{system.gateway}/webhook-endpoints/{endpoint['id']}/rotate-secret",
        headers=system.auth(org),
    ) as r:
        assert r.status == 200, await r.text()
        rotated = await r.json()
    assert rotated["secret"] != endpoint["secret"]
    assert rotated["previous_secret_expires_at"] is not None
    call_id = await place_call(http, system, org)
    await until(lambda: len(receiver.of_call(call_id)) >= 1, 30, "call.queued")
    (message,) = receiver.of_call(call_id)
    assert len(message.headers["webhook-signature"].split(" ")) == 2
    verify(rotated["secret"], message)
    verify(endpoint["secret"], message)
    # the test message is signed the same way
    async with http.post(
        f"{system.gateway}/webhook-endpoints/{endpoint['id']}/test", headers=system.auth(org)
    ) as r:
        assert r.status == 200, await r.text()
        result = await r.json()
    assert result["delivered"] is True
    assert result["response_status"] == 200
    test_message = receiver.received[-1]
    assert test_message.json["type"] == "webhook.test"
    verify(rotated["secret"], test_message)
    verify(endpoint["secret"], test_message)


async def test_redeliver_and_replay_send_a_message_again(
    system: System, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    org = new_org()
    started = datetime.now(UTC) - timedelta(seconds=1)
    endpoint = await create_endpoint(http, system, org, receiver.url, ["call.queued"])
    call_id = await place_call(http, system, org)
    await until(lambda: len(receiver.of_call(call_id)) >= 1, 30, "call.queued")
    (item,) = await logged(
        http,
        system,
        org,
        endpoint["id"],
        lambda items: len(items) == 1 and len(items[0]["attempts"]) == 1,
        "the first attempt logged",
        call_id=call_id,
    )
    async with http.post(
        f"{system.gateway}/webhook-endpoints/{endpoint['id']}/deliveries/{item['id']}/redeliver",
        headers=system.auth(org),
    ) as r:
        assert r.status == 202, await r.text()
    await until(lambda: len(receiver.of_call(call_id)) >= 2, 30, "the redelivery")
    first, again = receiver.of_call(call_id)
    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    async with http.post(
        f"{system.gateway}/webhook-endpoints/{endpoint['id']}/replay",
        json={"since": started.isoformat()},
        headers=system.auth(org),
    ) as r:
        assert r.status == 202, await r.text()
        replay = await r.json()
    assert (replay["status"], replay["queued"], replay["finished_at"]) == ("started", 0, None)
    replay_url = f"{system.gateway}/webhook-endpoints/{endpoint['id']}/replays/{replay['id']}"

    async def replay_done() -> bool:
        async with http.get(replay_url, headers=system.auth(org)) as r:
            assert r.status == 200, await r.text()
            followed = await r.json()
        return bool(followed["status"] == "done" and followed["queued"] == 1)

    await wait_until(replay_done, within=30, what="the replay to be done, its message queued")
    async with http.get(replay_url, headers=system.auth(new_org())) as r:
        assert r.status == 404  # another organization's replay
    await until(lambda: len(receiver.of_call(call_id)) >= 3, 30, "the replay")
    assert receiver.of_call(call_id)[2].headers["webhook-id"] == first.headers["webhook-id"]
    (item,) = await logged(
        http,
        system,
        org,
        endpoint["id"],
        lambda items: len(items) == 1 and len(items[0]["attempts"]) >= 3,
        "the replay's attempt logged",
        call_id=call_id,
    )
    assert len(item["attempts"]) == 3  # one message, three sends: first, redelivery, replay


async def test_endpoints_are_scoped_to_the_organization_and_the_scope(
    system: System, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    org, other = new_org(), new_org()
    endpoint = await create_endpoint(http, system, org, receiver.url, ["call.queued"])
    for method, path in [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("GET", "/deliveries"),
        ("POST", "/rotate-secret"),
        ("POST", "/test"),
    ]:
        async with http.request(
            method,
            f"{system.gateway}/webhook-endpoints/{endpoint['id']}{path}",
            json={"enabled": False} if method == "PATCH" else None,
            headers=system.auth(other),
        ) as r:
            assert r.status == 404, (method, path, await r.text())
    async with http.get(f"{system.gateway}/webhook-endpoints", headers=system.auth(other)) as r:
        assert (await r.json())["items"] == []
    # an API key needs webhooks:manage (not given by default)
    async with http.post(
        f"{system.gateway}/api-keys",
        json={"name": "reader", "scopes": ["calls:read", "calls:write"]},
        headers=system.auth(org),
    ) as r:
        key = (await r.json())["key"]
    async with http.get(f"{system.gateway}/webhook-endpoints", headers={"X-API-Key": key}) as r:
        assert r.status == 403
        assert "webhooks:manage" in (await r.json())["error"]["message"]
    async with http.post(
        f"{system.gateway}/api-keys",
        json={"name": "hooks", "scopes": ["webhooks:manage"]},
        headers=system.auth(org),
    ) as r:
        key = (await r.json())["key"]
    async with http.get(f"{system.gateway}/webhook-endpoints", headers={"X-API-Key": key}) as r:
        assert r.status == 200
        assert [e["id"] for e in (await r.json())["items"]] == [endpoint["id"]]
    # validation: a clear 422 naming the field
    async with http.post(
        f"{system.gateway}/webhook-endpoints",
        json={"url": receiver.url, "events": ["call.exploded"]},
        headers=system.auth(org),
    ) as r:
        assert r.status == 422
        assert (await r.json())["error"]["details"][0]["field"].startswith("events")


async def test_a_batch_completes_once_and_a_transcript_is_announced(
    system: System, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    org = new_org()
    endpoint = await create_endpoint(
        http, system, org, receiver.url, ["call.ended", "batch.completed", "transcript.ready"]
    )
    async with http.post(
        f"{system.gateway}/calls/batch",
        json={"to_numbers": [unique_number(), unique_number()], "from_number": "+14155550199"},
        headers=system.auth(org),
    ) as r:
        assert r.status == 202, await r.text()
        batch_id = (await r.json())["batch_id"]

    def types() -> list[str]:
        return [m.json["type"] for m in receiver.received]

    # batch and call messages are ordered each in their own stream, not against each other:
    # the last call.ended may come after batch.completed
    await until(
        lambda: "batch.completed" in types() and types().count("call.ended") >= 2,
        60,
        "batch.completed and both call.ended",
    )
    await asyncio.sleep(1.0)  # anything sent twice would have come by now
    assert sorted(types()) == ["batch.completed", "call.ended", "call.ended"]
    completed = next(m for m in receiver.received if m.json["type"] == "batch.completed")
    verify(endpoint["secret"], completed)
    assert completed.json["data"]["batch_id"] == batch_id
    assert completed.json["data"]["total"] == 2
    # (ordered within the batch's own messages, not against its calls': its data has them all)
    assert {c["call_status"] for c in completed.json["data"]["calls"]} <= {"completed", "failed"}

    call_id = next(
        m.json["data"]["call_id"] for m in receiver.received if m.json["type"] == "call.ended"
    )
    async with http.post(
        f"{system.gateway}/calls/{call_id}/conversation",
        json={"transcript": [{"role": "agent", "content": "Hello!"}]},
        headers=system.auth(org),
    ) as r:
        assert r.status == 202, await r.text()
    await until(lambda: "transcript.ready" in types(), 30, "transcript.ready")
    ready = next(m for m in receiver.received if m.json["type"] == "transcript.ready")
    assert ready.json["data"]["transcript"] == [{"role": "agent", "content": "Hello!"}]
