"""How a call's caller ID and agent are chosen, and whether it is recorded (the documented
rules, pure)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Agent:
    id: uuid.UUID
    name: str
    phone_number: str
    recording_enabled: bool = True


class CallerIdUnresolved(Exception):
    pass


def choose_from_number(
    explicit: str | None, agent: Agent | None, organization_default: str | None
) -> str:
    """Explicit `from_number`, else the agent's number, else the organization's SIP default."""
    number = explicit or (agent.phone_number if agent else None) or organization_default
    if not number:
        raise CallerIdUnresolved(
            "no caller ID: pass from_number, or an agent_id, or set a default with PUT /sip-config"
        )
    return number


def should_record(explicit: bool | None, agent: Agent | None) -> bool:
    """The call's own `record`, else its agent's `recording_enabled`, else recorded."""
    if explicit is not None:
        return explicit
    return agent.recording_enabled if agent else True
