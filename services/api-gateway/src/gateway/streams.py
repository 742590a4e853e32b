"""Lookups of calls in the event store (the gateway owns no call state of its own)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

from calls_events import call_stream
from calls_platform import eventstore
from calls_platform.db import Conn

_INBOUND: Final = uuid.UUID("5b0c6a2e-7a51-4f0e-9a43-2f4f0c2b6f11")


@dataclass(frozen=True)
class CallStream:
    call_id: uuid.UUID
    organization_id: str
    correlation_id: str | None

    @property
    def stream_id(self) -> str:
        return call_stream(self.call_id)


def inbound_call_id(call_sid: str) -> uuid.UUID:
    """An inbound call's id, derived from the carrier's SID so every webhook for it agrees."""
    return uuid.uuid5(_INBOUND, call_sid)


async def find_call(conn: Conn, call_id: uuid.UUID) -> CallStream | None:
    first = await eventstore.first_event(conn, call_stream(call_id))
    if first is None:
        return None
    return CallStream(call_id, first.organization_id, first.correlation_id)
