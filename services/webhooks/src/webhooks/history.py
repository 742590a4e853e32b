"""The only place the webhooks service reads the event store (through calls_platform.eventstore):
the earlier events of a stream when one arrives ahead of them, and a replay's events."""

from __future__ import annotations

from datetime import datetime

from calls_events import Envelope
from calls_platform import eventstore
from calls_platform.db import Conn

from .domain import StreamState

REPLAY_PAGE = 1000


async def stream_events(
    conn: Conn, stream_id: str, *, versions_from: int, upto: int
) -> list[Envelope]:
    """The stream's events with versions_from <= version <= upto. Every one of them is
    committed: an append reads its stream's head before it inserts the next version, so a
    committed version's predecessors are committed too."""
    return [
        e
        for e in await eventstore.read_stream(conn, stream_id)
        if e.stream_version is not None and versions_from <= e.stream_version <= upto
    ]


async def replay_page(
    conn: Conn, *, after: eventstore.Checkpoint, organization_id: str, limit: int = REPLAY_PAGE
) -> tuple[list[tuple[Envelope, eventstore.Checkpoint]], eventstore.Checkpoint | None]:
    """One page of the store in commit order for a replay: the organization's events after
    cursor `after`, each with the cursor just past it, and the cursor to continue from (None
    at the end)."""
    events = await eventstore.read_all(conn, after=after, limit=limit)
    if not events:
        return [], None
    mine = [
        (e, at)
        for e, at in zip(events, events.checkpoints, strict=True)
        if e.organization_id == organization_id
    ]
    return mine, events.checkpoint if len(events) == limit else None


def replay_state() -> StreamState:
    """A replay folds each stream from its first event (so once-only types stay once)."""
    return StreamState()


def since(envelope: Envelope, moment: datetime) -> bool:
    return envelope.occurred_at >= moment
