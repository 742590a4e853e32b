"""Events from the voice-agent side of a call: inbound calls arriving, conversations reported."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ._base import Event

Text = Annotated[str, StringConstraints(max_length=20_000)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class TranscriptTurn(BaseModel):
    """One utterance: who spoke (`agent`, `caller`, or the runtime's own role names such as
    `assistant`/`user`/`system`/`tool`) and what was said."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Name
    content: Text


class ProviderUse(BaseModel):
    """One AI provider used by the call: what it did (`type`: llm, stt, tts, …) and which model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Name
    model: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class ConversationReported(Event):
    """The voice-agent runtime that handled a call reports the conversation when it ends."""

    TYPE = "ConversationReported"

    call_id: uuid.UUID
    transcript: list[TranscriptTurn] = Field(default_factory=list, max_length=5_000)
    provider_usage: dict[Name, ProviderUse] = Field(default_factory=dict, max_length=50)
    ended_by: Literal["caller", "agent"] | None = None


class InboundCallReceived(Event):
    """Someone called one of an organization's agent numbers (Twilio's incoming-call webhook)."""

    TYPE = "InboundCallReceived"

    call_id: uuid.UUID
    call_sid: str
    # caller ID as the carrier gives it: usually E.164, but may be "anonymous" or a SIP URI
    from_number: Annotated[str, StringConstraints(max_length=128)]
    to_number: str
    agent_id: uuid.UUID
    agent_name: str
    received_at: datetime
