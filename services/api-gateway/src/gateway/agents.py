"""Agents and the organization's SIP default: the configuration the gateway owns."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from aiohttp import web
from calls_events import CallingWindow
from calls_platform.db import Conn
from calls_platform.http import json_error, parse_body

from .caller_id import Agent
from .context import POOL, principal
from .models import CreateAgent, SipConfig


async def find_agent(conn: Conn, organization_id: str, agent_id: uuid.UUID) -> Agent | None:
    cur = await conn.execute(
        "SELECT id, name, phone_number, recording_enabled FROM gateway.agents"
        " WHERE id = %s AND organization_id = %s",
        (agent_id, organization_id),
    )
    row = await cur.fetchone()
    return Agent(**row) if row else None


async def find_agent_by_number(conn: Conn, organization_id: str, number: str) -> Agent | None:
    cur = await conn.execute(
        "SELECT id, name, phone_number, recording_enabled FROM gateway.agents"
        " WHERE phone_number = %s AND organization_id = %s",
        (number, organization_id),
    )
    row = await cur.fetchone()
    return Agent(**row) if row else None


@dataclass(frozen=True)
class CallFacts:
    """What accepting a call needs from the organization's configuration, read in one query:
    choosing its caller ID and agent, and the calling window it gets when it sets none."""

    agent: Agent | None
    """The agent asked for by id (None: not asked for, or not this organization's)."""
    default_from_number: str | None
    by_number: dict[str, Agent]
    """The organization's agents whose number is the explicit one or the default."""
    default_window: CallingWindow | None
    """The calling policy's window (PUT /calling-policy), None where none is set."""


# one round trip for everything a POST /calls reads: each statement costs the gateway a
# system call to send and another to receive, the largest part of its CPU per request
# (docs/benchmarks.md, "Session 6"); what accepting a call needs to read goes in here
_CALL_FACTS = """
WITH config AS (
    SELECT default_from_number FROM gateway.sip_config WHERE organization_id = %(org)s
)
SELECT
    (SELECT default_from_number FROM config) AS default_from_number,
    (SELECT window_rules FROM gateway.calling_policies WHERE organization_id = %(org)s)
        AS window_rules,
    coalesce(jsonb_agg(jsonb_build_object('id', a.id, 'name', a.name,
        'phone_number', a.phone_number, 'recording_enabled', a.recording_enabled)), '[]')
        AS agents
FROM gateway.agents a
WHERE a.organization_id = %(org)s AND (a.id = %(agent_id)s OR a.phone_number = %(number)s
    OR a.phone_number = (SELECT default_from_number FROM config))
"""


async def call_facts(
    conn: Conn, organization_id: str, agent_id: uuid.UUID | None, from_number: str | None
) -> CallFacts:
    """The agent by id, the SIP default, the agents by number and the default calling
    window, in one round trip."""
    cur = await conn.execute(
        _CALL_FACTS, {"org": organization_id, "agent_id": agent_id, "number": from_number}
    )
    row = await cur.fetchone()
    assert row is not None  # an aggregate: always one row
    agents = [Agent(**{**a, "id": uuid.UUID(a["id"])}) for a in row["agents"]]
    rules = row["window_rules"]
    return CallFacts(
        agent=next((a for a in agents if a.id == agent_id), None),
        default_from_number=row["default_from_number"],
        by_number={a.phone_number: a for a in agents},
        default_window=None if rules is None else CallingWindow.model_validate(rules),
    )


async def find_agent_for_number(conn: Conn, number: str) -> tuple[str, Agent] | None:
    """The agent a number rings, in whichever organization owns it (inbound routing)."""
    cur = await conn.execute(
        "SELECT organization_id, id, name, phone_number, recording_enabled FROM gateway.agents"
        " WHERE phone_number = %s",
        (number,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    organization_id = row.pop("organization_id")
    return organization_id, Agent(**row)


async def default_from_number(conn: Conn, organization_id: str) -> str | None:
    cur = await conn.execute(
        "SELECT default_from_number FROM gateway.sip_config WHERE organization_id = %s",
        (organization_id,),
    )
    row = await cur.fetchone()
    return row["default_from_number"] if row else None


def _agent_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "phone_number": row["phone_number"],
        "recording_enabled": row["recording_enabled"],
        "created_at": row["created_at"].isoformat(),
    }


async def create_agent(request: web.Request) -> web.Response:
    body = await parse_body(request, CreateAgent)
    org = principal(request).organization_id
    try:
        async with request.app[POOL].connection() as conn:
            cur = await conn.execute(
                "INSERT INTO gateway.agents"
                " (id, organization_id, name, phone_number, recording_enabled)"
                " VALUES (%s, %s, %s, %s, %s)"
                " RETURNING id, name, phone_number, recording_enabled, created_at",
                (uuid.uuid4(), org, body.name, body.phone_number, body.recording_enabled),
            )
            row = await cur.fetchone()
    except psycopg.errors.UniqueViolation:
        return json_error(
            409,
            "conflict",
            "phone_number is already assigned to an agent",
            [{"field": "phone_number", "message": "already assigned to an agent"}],
        )
    assert row is not None
    return web.json_response(_agent_json(row), status=201)


async def list_agents(request: web.Request) -> web.Response:
    org = principal(request).organization_id
    async with request.app[POOL].connection() as conn:
        cur = await conn.execute(
            "SELECT id, name, phone_number, recording_enabled, created_at FROM gateway.agents"
            " WHERE organization_id = %s ORDER BY created_at, id",
            (org,),
        )
        rows = await cur.fetchall()
    return web.json_response({"items": [_agent_json(r) for r in rows]})


async def put_sip_config(request: web.Request) -> web.Response:
    body = await parse_body(request, SipConfig)
    org = principal(request).organization_id
    async with request.app[POOL].connection() as conn:
        await conn.execute(
            "INSERT INTO gateway.sip_config (organization_id, default_from_number)"
            " VALUES (%s, %s) ON CONFLICT (organization_id) DO UPDATE"
            " SET default_from_number = excluded.default_from_number, updated_at = now()",
            (org, body.default_from_number),
        )
    return web.json_response({"default_from_number": body.default_from_number})


async def get_sip_config(request: web.Request) -> web.Response:
    org = principal(request).organization_id
    async with request.app[POOL].connection() as conn:
        number = await default_from_number(conn, org)
    return web.json_response({"default_from_number": number})
