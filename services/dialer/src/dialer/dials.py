"""The dialer's table of dials: a dial's row as the steps read it, the channels that wake the
dial loop and the canceler, and how a state change appends its event in the same commit.

Each step of a call's path through the dialer owns its statements (see docs/architecture.md):
`dial_queue` (requests in, batch cancels), `claims` (the fair claim, its order in the pure
`fairness`), `attempts` (what became of a dial attempt), `carrier_news` (the carrier's
statuses of a placed call), `recording_checks` (recordings to list at the carrier) and
`cancel_candidates` (placed calls to cancel at the carrier)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from calls_events import Envelope, Event, call_stream
from calls_platform import eventstore
from calls_platform.db import Conn
from calls_platform.metrics import EVENTS_APPENDED

WORK_CHANNEL: Final = "dialer_work"
# notified when a batch is canceled: its placed calls may need canceling at the carrier
CANCEL_CHANNEL: Final = "dialer_cancel"


@dataclass(frozen=True)
class Dial:
    call_id: uuid.UUID
    organization_id: str
    to_number: str
    from_number: str
    record: bool
    attempts: int
    correlation_id: str | None
    requested_event_id: uuid.UUID
    dial_started_at: datetime | None
    batch_id: str | None
    redialed: bool
    # the CallRequested data of a call with campaign rules (None: it has none)
    request: dict[str, Any] | None = None

    @property
    def variables(self) -> dict[str, str]:
        return dict((self.request or {}).get("variables") or {})


DIAL_COLUMNS: Final = (
    "call_id, organization_id, to_number, from_number, record, attempts, correlation_id,"
    " requested_event_id, dial_started_at, batch_id, redialed, request"
)
# what an event about a dial is wrapped with (`on_call`), and the envelope that opens its
# stream when it is not open yet (`open_streams`)
EVENT_COLUMNS: Final = "call_id, organization_id, correlation_id, requested_event_id, unopened"

Row = Dial | Mapping[str, Any]
"""A dial, or the row of one that has at least EVENT_COLUMNS."""


def call_id_of(row: Row) -> uuid.UUID:
    return row.call_id if isinstance(row, Dial) else uuid.UUID(str(row["call_id"]))


def count_appended(recorded: Sequence[Envelope]) -> None:
    """events_appended_total, as every service that appends keeps it (repeats not counted)."""
    for envelope in recorded:
        EVENTS_APPENDED.labels(envelope.event_type).inc()


def on_call(row: Row, event: Event, event_id: uuid.UUID) -> Envelope:
    """`event` on the dial's call stream, in the context of the request that created it."""
    fields = row.__dict__ if isinstance(row, Dial) else row
    requested = fields.get("requested_event_id")
    return Envelope.wrap(
        event,
        stream_id=call_stream(fields["call_id"]),
        organization_id=fields["organization_id"],
        correlation_id=fields.get("correlation_id"),
        causation_id=str(requested) if requested else None,
        event_id=event_id,
    )


async def open_streams(conn: Conn, rows: Sequence[Row]) -> None:
    """Open the stream of each dial whose stream is not open yet (a call a BatchRequested
    carries): append its CallRequested, in the caller's transaction, so that nothing is ever
    appended on a call, nor the carrier asked to ring it, before its request is on its
    stream. The event takes the time it is appended (its id stays the one derived from the
    batch's, so repeating it appends nothing). A `Dial` is a claimed dial, whose stream its
    claim opened."""
    unopened = [
        (call_id_of(row), opening)
        for row in rows
        if not isinstance(row, Dial) and (opening := row.get("unopened")) is not None
    ]
    if not unopened:
        return
    now = datetime.now(UTC)
    await append_envelopes(
        conn,
        [
            Envelope.model_validate(opening).model_copy(update={"occurred_at": now})
            for _, opening in unopened
        ],
    )
    await conn.execute(
        "UPDATE dialer.dials SET unopened = NULL WHERE call_id = ANY(%s)",
        ([call_id for call_id, _ in unopened],),
    )


async def append(conn: Conn, changes: Sequence[tuple[Row, Event]], kind: str) -> None:
    """Append each change's event on its call (its stream opened first, if it is not yet),
    one of `kind` per call however often this runs (the event id is derived from the kind and
    the call)."""
    await open_streams(conn, [row for row, _ in changes])
    envelopes = []
    for row, event in changes:
        event_id = eventstore.deterministic_event_id(kind, str(call_id_of(row)))
        envelopes.append(on_call(row, event, event_id))
    await append_envelopes(conn, envelopes)


async def append_envelopes(conn: Conn, envelopes: Sequence[Envelope]) -> list[Envelope]:
    """Append, count what was new, and return it."""
    recorded = await eventstore.append(conn, envelopes)
    count_appended(recorded)
    return recorded


async def notify(conn: Conn, channel: str) -> None:
    await conn.execute("SELECT pg_notify(%s, '')", (channel,))
