"""The only place the webhooks service reads the event store (through calls_platform.eventstore):
the earlier events of a stream when one arrives ahead of them, and a replay's events."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

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


class ReplayPage(NamedTuple):
    """One page of the store for a replay: the organization's events on it, each with the
    cursor just past it; the cursor past the page (the last event on it, whoever's); whether
    the page was full (more may follow at once) or reached what is readable now."""

    events: list[tuple[Envelope, eventstore.Checkpoint]]
    end: eventstore.Checkpoint
    full: bool


async def replay_page(
    conn: Conn, *, after: eventstore.Checkpoint, organization_id: str, limit: int = REPLAY_PAGE
) -> ReplayPage:
    """The next page of the store after cursor `after`, in commit order: `limit` events
    looked at, the organization's built (eventstore.read_organization)."""
    window = await eventstore.read_organization(conn, organization_id, after=after, limit=limit)
    events = window.events
    return ReplayPage(
        list(zip(events, events.checkpoints, strict=True)), events.checkpoint, window.full
    )


async def store_head(conn: Conn) -> eventstore.Checkpoint:
    """The store's last committed event: where a replay asked for now ends."""
    return await eventstore.head(conn)


def replay_state() -> StreamState:
    """A replay folds each stream from its first event (so once-only types stay once)."""
    return StreamState()


def since(envelope: Envelope, moment: datetime) -> bool:
    return envelope.occurred_at >= moment
