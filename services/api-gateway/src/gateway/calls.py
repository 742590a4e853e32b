"""Placing calls and batches: validate, resolve caller ID, append the request events, answer 202.

The 202 is sent only after the events are committed to the event store, which is the outbox:
a request that got a 202 is never lost, even if RabbitMQ is down at that moment.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from calls_events import (
    TERMINAL_CALL_STATUSES,
    BatchCancelRequested,
    BatchRequested,
    CallingWindow,
    CallRequested,
    Envelope,
    call_stream,
    placeholder_call_sid,
)
from calls_platform import eventstore
from calls_platform.db import Conn
from calls_platform.http import CORRELATION_KEY, json_error, parse_body, unprocessable
from calls_platform.metrics import EVENTS_APPENDED
from pydantic import BaseModel

from . import idempotency
from .agents import call_facts
from .auth import Principal
from .caller_id import Agent, CallerIdUnresolved, choose_from_number, should_record
from .campaign_models import call_schedule
from .context import POOL, SETTINGS, principal
from .models import Callee, PlaceBatch, PlaceCall
from .reads import batch_to_change


async def _resolve(
    conn: Conn, org: str, from_number: str | None, agent_id: uuid.UUID | None
) -> tuple[str, Agent | None, CallingWindow | None]:
    """The call's caller ID, its agent and the organization's default calling window (one
    query)."""
    facts = await call_facts(conn, org, agent_id, from_number)
    agent = None
    if agent_id is not None:
        agent = facts.agent
        if agent is None:  # unknown, or another organization's: the same answer
            raise unprocessable("unknown agent", "agent_id", "no agent with this id")
    try:
        number = choose_from_number(from_number, agent, facts.default_from_number)
    except CallerIdUnresolved as exc:
        raise unprocessable(str(exc), "from_number", str(exc)) from None
    if agent is None:
        agent = facts.by_number.get(number)
    return number, agent, facts.default_window


@dataclass(frozen=True)
class Accepted:
    """What a request appends (with `expected_versions`), and the 202's body."""

    response: dict[str, Any]
    envelopes: Sequence[Envelope] = ()
    expected_versions: Mapping[str, int] = field(default_factory=dict)

    async def append(self, conn: Conn) -> None:
        await eventstore.append(conn, self.envelopes, expected_versions=self.expected_versions)

    def count(self) -> None:
        for event_type, n in Counter(e.event_type for e in self.envelopes).items():
            EVENTS_APPENDED.labels(event_type).inc(n)


async def _accept(
    request: web.Request,
    body: BaseModel,
    build: Callable[[Conn, Principal], Awaitable[Accepted]],
) -> web.Response:
    """Append what `build` makes of the request in one transaction and answer 202; honour an
    Idempotency-Key by claiming it in that same transaction."""
    who = principal(request)
    key = idempotency.key_of(request)
    async with request.app[POOL].connection() as conn:
        if key is None:
            # no transaction: caller ID is one query, the append one statement (its own
            # transaction): two round trips, see docs/benchmarks.md
            accepted = await build(conn, who)
            await accepted.append(conn)
        else:
            # the key is claimed and remembered in the append's transaction (pipelined: BEGIN
            # goes with the claim, the last UPDATE with COMMIT)
            async with conn.pipeline(), conn.transaction():
                replay = await idempotency.claim(
                    conn, who.organization_id, key, idempotency.fingerprint(request, body)
                )
                if replay is not None:
                    return replay
                accepted = await build(conn, who)
                await accepted.append(conn)
                await idempotency.remember(conn, who.organization_id, key, 202, accepted.response)
    accepted.count()
    return web.json_response(accepted.response, status=202)


async def place_call(request: web.Request) -> web.Response:
    body = await parse_body(request, PlaceCall)

    async def build(conn: Conn, who: Principal) -> Accepted:
        from_number, agent, window = await _resolve(
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
            schedule=call_schedule(body.schedule, window, None),
            retry=body.retry,
        )
        stream = call_stream(call_id)
        envelope = Envelope.wrap(
            event,
            stream_id=stream,
            organization_id=who.organization_id,
            correlation_id=request[CORRELATION_KEY],
        )
        response = {
            "call_id": str(call_id),
            "call_sid": placeholder_call_sid(call_id),
            "status": "queued",
        }
        return Accepted(response, [envelope], {stream: eventstore.NO_STREAM})

    return await _accept(request, body, build)


def _uuid4_strings(n: int) -> list[str]:
    """`n` random (version 4) UUIDs in their string form: str(uuid.uuid4()) one by one was a
    third of building a 10,000-number batch."""
    digits = os.urandom(16 * n).hex()
    ids = []
    for i in range(0, 32 * n, 32):
        h = digits[i : i + 32]
        variant = "89ab"[int(h[16], 16) & 3]
        ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}")
    return ids


def batch_calls(
    recipients: Sequence[Callee], schedule_of: Callable[[str | None], dict[str, Any] | None]
) -> list[dict[str, Any]]:
    """The calls of a batch in the JSON form of BatchRequested.calls (a new call id each, and
    a recipient's variables, metadata and schedule when it has them), built without
    validating 10,000 models one by one (each recipient was validated, by PlaceBatch)."""
    calls = []
    for recipient, call_id in zip(recipients, _uuid4_strings(len(recipients)), strict=True):
        call: dict[str, Any] = {"call_id": call_id, "to_number": recipient.to_number}
        if recipient.variables:
            call["variables"] = recipient.variables
        if recipient.metadata:
            call["metadata"] = recipient.metadata
        if (schedule := schedule_of(recipient.time_zone)) is not None:
            call["schedule"] = schedule
        calls.append(call)
    return calls


def _unique_in_order(recipients: list[Callee]) -> list[Callee]:
    """The first entry of each number (a number is dialed once per batch)."""
    first: dict[str, Callee] = {}
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
        from_number, agent, window = await _resolve(
            conn, who.organization_id, body.from_number, body.agent_id
        )
        batch_id = f"batch-{uuid.uuid4().hex}"
        correlation_id = request[CORRELATION_KEY]
        schedules: dict[str | None, dict[str, Any] | None] = {}

        def schedule_of(time_zone: str | None) -> dict[str, Any] | None:
            """A recipient's schedule in its JSON form (one per zone: most share it)."""
            if time_zone not in schedules:
                schedule = call_schedule(body.schedule, window, time_zone)
                schedules[time_zone] = (
                    None if schedule is None else schedule.model_dump(mode="json")
                )
            return schedules[time_zone]

        # one event carries the batch and its calls (see docs/architecture.md, "Batches")
        batch = BatchRequested(
            batch_id=batch_id,
            total=len(numbers),
            from_number=from_number,
            agent_id=agent.id if agent else None,
            duplicates_dropped=dropped,
            requested_by=who.subject,
            agent_name=agent.name if agent else None,
            record=should_record(body.record, agent),
            retry=body.retry,
            max_concurrency=body.max_concurrency,
        )
        envelope = Envelope(
            event_type=BatchRequested.TYPE,
            event_version=BatchRequested.VERSION,
            stream_id=batch_id,
            organization_id=who.organization_id,
            correlation_id=correlation_id,
            data={**batch.model_dump(mode="json"), "calls": batch_calls(numbers, schedule_of)},
        )
        response = {
            "batch_id": batch_id,
            "total": len(numbers),
            "status": "queued",
            "duplicates_dropped": dropped,
        }
        return Accepted(response, [envelope], {batch_id: eventstore.NO_STREAM})

    return await _accept(request, body, build)


async def cancel_batch(request: web.Request) -> web.Response:
    batch_id = request.match_info["batch_id"]
    batch = await batch_to_change(request, batch_id)
    # Calls dialed but not yet ended can still be canceled at the carrier (the dialer does it):
    # only a batch whose every call has ended has nothing left to cancel.
    if all(call["call_status"] in TERMINAL_CALL_STATUSES for call in batch["calls"]):
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
