"""Unit: the caller-ID rule: explicit from_number, else the agent's number, else the SIP default."""

from __future__ import annotations

import uuid

import pytest
from gateway.caller_id import Agent, CallerIdUnresolved, choose_from_number, should_record

EXPLICIT = "+14155550001"
AGENT = Agent(id=uuid.uuid4(), name="Ada", phone_number="+14155550002")
DEFAULT = "+14155550003"


def test_explicit_number_wins_over_agent_and_default() -> None:
    assert choose_from_number(EXPLICIT, AGENT, DEFAULT) == EXPLICIT


def test_agent_number_is_used_when_no_explicit_number() -> None:
    assert choose_from_number(None, AGENT, DEFAULT) == AGENT.phone_number


def test_organization_default_is_used_when_no_explicit_number_and_no_agent() -> None:
    assert choose_from_number(None, None, DEFAULT) == DEFAULT


def test_explicit_number_is_used_without_agent_or_default() -> None:
    assert choose_from_number(EXPLICIT, None, None) == EXPLICIT


@pytest.mark.parametrize("default", [None, ""])
def test_nothing_to_choose_from_is_unresolved(default: str | None) -> None:
    with pytest.raises(CallerIdUnresolved, match="from_number"):
        choose_from_number(None, None, default)


# --- whether a call is recorded: its own `record`, else its agent's setting, else yes --------

SILENT_AGENT = Agent(
    id=uuid.uuid4(), name="Quiet", phone_number="+14155550004", recording_enabled=False
)


@pytest.mark.parametrize(
    ("explicit", "agent", "recorded"),
    [
        (None, None, True),
        (None, AGENT, True),
        (None, SILENT_AGENT, False),
        (True, SILENT_AGENT, True),
        (False, AGENT, False),
        (False, None, False),
        (True, None, True),
    ],
)
def test_a_calls_own_record_wins_then_its_agents_setting_then_recorded(
    explicit: bool | None, agent: Agent | None, recorded: bool
) -> None:
    assert should_record(explicit, agent) is recorded
