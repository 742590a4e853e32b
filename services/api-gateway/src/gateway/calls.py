"""Placing calls and batches: validate, resolve caller ID, append the request events, answer 202.

The 202 is sent only after the events are committed to the event store, which is the outbox:
a request that got a 202 is never lost, even if RabbitMQ is down at that moment.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from calls_events import (
    BatchCancelRequested,
    BatchRequested,
    CallRequested,
    Envelope,
    call_stream,
)
from calls_platform import eventstore
from calls_platform.db import Conn
from calls_platform.http import CORRELATION_KEY, json_error
from calls_platform.metrics import EVENTS_APPENDED
from pydantic import BaseModel

from . import idempotency
from .agents import default_from_number, find_agent, find_agent_by_number
from .auth import Principal
from .caller_id import Agent, CallerIdUnresolved, choose_from_number, should_record
from .calling_policy import default_window
from .campaign_models import call_schedule
from .context import POOL, SETTINGS, principal
from .models import PlaceBatch, PlaceCall, Recipient
from .reads import fetch_batch
from .validation import parse_body, unprocessable


async def _resolve(
    conn: Conn, org: str, from_number: str | None, agent_id: uuid.UUID | None
) -> tuple[str, Agent | None]:
    agent = None
    if agent_id is not None:
        agent = await find_agent(conn, org, agent_id)
        if agent is None:  # unknown, or another organization's: the same answer
            raise unprocessable("unknown agent", "agent_id", "no agent with this id")
    try:
        number = choose_from_number(from_number, agent, await default_from_number(conn, org))
    except CallerIdUnresolved as exc:
        raise unprocessable(str(exc), "from_number", str(exc)) from None
    if agent is None:
        agent = await find_agent_by_number(conn, org, number)
    return number, agent


# call statuses after which nothing changes (the call log's terminal statuses)
ENDED = frozenset({"completed", "failed", "canceled"})


def queued_sid(call_id: uuid.UUID) -> str:
    """The placeholder SID a call has until the carrier gives it a real one."""
    return f"queued-{call_id.hex[:12]}"


Accepted = tuple[list[Envelope], dict[str, int], dict[str, Any]]


async def _accept(
    request: web.Request,
    body: BaseModel,
    build: Callable[[Conn, Principal], Awaitable[Accepted]],
) -> web.Response:
    """Append what `build` makes of the request in one transaction and answer 202; honour an
    Idempotency-Key by claiming it in that same transaction."""
    who = principal(request)
    key = idempotency.key_of(request)
    async with request.app[POOL].connection() as conn, conn.transaction():
        if key is not None:
            replay = await idempotency.claim(
                conn, who.organization_id, key, idempotency.fingerprint(request, body)
            )
            if replay is not None:
                return replay
        envelopes, expected_versions, response = await build(conn, who)
        await eventstore.append(conn, envelopes, expected_versions=expected_versions)
        if key is not None:
            await idempotency.remember(conn, who.organization_id, key, 202, response)
    for envelope in envelopes:
        EVENTS_APPENDED.labels(envelope.event_type).inc()
    return web.json_response(response, status=202)


async def place_call(request: web.Request) -> web.Response:
    body = await parse_body(request, PlaceCall)

    async def build(conn: Conn, who: Principal) -> Accepted:
        from_number, agent = await _resolve(
            conn, who.organization_id, body.from_number, body.agent_id
        )
        call_id = uuid.uuid4()
        event = CallRequested(
            call_id=call_id,
            to_number=body.to_number,
            from_number=from_number,
            agent_id=agent.id if agent else None,
            agent_name=agent.name if agent else None,
            record=should_record(body.record, agent),
            requested_by=who.subject,
            variables=body.variables,
            metadata=body.metadata,
            schedule=call_schedule(
                body.schedule, await default_window(conn, who.organization_id), None
            ),
            retry=body.retry,
        )
        stream = call_stream(call_id)
        envelope = Envelope.wrap(
            event,
            stream_id=stream,
            organization_id=who.organization_id,
            correlation_id=request[CORRELATION_KEY],
        )
        response = {"call_id": str(call_id), "call_sid": queued_sid(call_id), "status": "queued"}
        return [envelope], {stream: eventstore.NO_STREAM}, response

    return await _accept(request, body, build)


def _unique_in_order(recipients: list[Recipient]) -> list[Recipient]:
    """The first entry of each number (a number is dialed once per batch)."""
    first: dict[str, Recipient] = {}
    for recipient in recipients:
        first.setdefault(recipient.to_number, recipient)
    return list(first.values())


async def place_batch(request: web.Request) -> web.Response:
    body = await parse_body(request, PlaceBatch)
    limit = request.app[SETTINGS].max_batch_size
    everyone = body.everyone()
    if len(everyone) > limit:
        field = "recipients" if body.recipients else "to_numbers"
        raise unprocessable("too many numbers", field, f"at most {limit} numbers per batch")
    numbers = _unique_in_order(everyone)
    dropped = len(everyone) - len(numbers)

    async def build(conn: Conn, who: Principal) -> Accepted:
        from_number, agent = await _resolve(
            conn, who.organization_id, body.from_number, body.agent_id
        )
        batch_id = f"batch-{uuid.uuid4().hex}"
        correlation_id = request[CORRELATION_KEY]
        batch = BatchRequested(
            batch_id=batch_id,
            total=len(numbers),
            from_number=from_number,
            agent_id=agent.id if agent else None,
            duplicates_dropped=dropped,
            requested_by=who.subject,
        )
        envelopes = [
            Envelope.wrap(
                batch,
                stream_id=batch_id,
                organization_id=who.organization_id,
                correlation_id=correlation_id,
            )
        ]
        window = await default_window(conn, who.organization_id)
        for index, recipient in enumerate(numbers):
            call_id = uuid.uuid4()
            call = CallRequested(
                call_id=call_id,
                to_number=recipient.to_number,
                from_number=from_number,
                agent_id=agent.id if agent else None,
                agent_name=agent.name if agent else None,
                batch_id=batch_id,
                batch_index=index,
                record=should_record(body.record, agent),
                requested_by=who.subject,
                variables=recipient.variables,
                metadata=recipient.metadata,
                schedule=call_schedule(body.schedule, window, recipient.time_zone),
                retry=body.retry,
                max_concurrency=body.max_concurrency,
            )
            envelopes.append(
                Envelope.wrap(
                    call,
                    stream_id=call_stream(call_id),
                    organization_id=who.organization_id,
                    correlation_id=correlation_id,
                )
            )
        response = {
            "batch_id": batch_id,
            "total": len(numbers),
            "status": "queued",
            "duplicates_dropped": dropped,
        }
        return envelopes, {batch_id: eventstore.NO_STREAM}, response

    return await _accept(request, body, build)


async def cancel_batch(request: web.Request) -> web.Response:
    batch_id = request.match_info["batch_id"]
    status, batch = await fetch_batch(request, batch_id)
    if status == 404:
        return json_error(404, "not_found", "batch not found")
    if status != 200:
        raise web.HTTPBadGateway(text="call log unavailable")
    # Calls dialed but not yet ended can still be canceled at the carrier (the dialer does it):
    # only a batch whose every call has ended has nothing left to cancel.
    if all(call["status"] in ENDED for call in batch["calls"]):
        return json_error(409, "conflict", "batch already finished: every call has ended")
    who = principal(request)
    async with request.app[POOL].connection() as conn:
        await eventstore.append(
            conn,
            [
                Envelope.wrap(
                    BatchCancelRequested(batch_id=batch_id, requested_by=who.subject),
                    stream_id=batch_id,
                    organization_id=who.organization_id,
                    correlation_id=request[CORRELATION_KEY],
                    # one cancel per batch: asking again changes nothing
                    event_id=eventstore.deterministic_event_id("cancel", batch_id),
                )
            ],
        )
    EVENTS_APPENDED.labels(BatchCancelRequested.TYPE).inc()
    return web.json_response({"batch_id": batch_id, "status": "canceled"}, status=202)
