"""Reads of the call log's read models, always scoped to one organization."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from calls_events import (
    BATCH_CALL_STATUSES,
    CALL_STATUSES,
    CARRIER_STATUSES,
    OUTCOMES,
    BatchCallStatus,
    is_placeholder_call_sid,
)
from calls_platform.db import Conn
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from .domain import FAILED, QUEUED

# What each read answers: (field, the column it comes from). `id` is the reference's name for
# the call id (`call_id` kept beside it); `start_time` is the column the list is ordered by:
# when the carrier started the call, or when it was queued until then (never null).
LIST_FIELDS: Final = (
    ("id", "call_id"),
    ("call_id", "call_id"),
    ("call_sid", "call_sid"),
    ("direction", "direction"),
    ("status", "status"),
    ("carrier_status", "carrier_status"),
    ("outcome", "outcome"),
    ("from_number", "from_number"),
    ("to_number", "to_number"),
    ("agent_id", "agent_id"),
    ("agent_name", "agent_name"),
    ("batch_id", "batch_id"),
    ("created_at", "created_at"),
    ("start_time", "sort_time"),
    ("end_time", "end_time"),
    ("duration", "duration"),
    ("error_reason", "error_reason"),
)
DETAIL_FIELDS: Final = (
    *LIST_FIELDS,
    ("error_code", "error_code"),
    ("answered_by", "answered_by"),
    ("transcript", "transcript"),
    ("provider_usage", "provider_usage"),
    ("recording_url", "recording_url"),
    # extensions (campaigns)
    ("variables", "variables"),
    ("metadata", "metadata"),
    ("attempt", "attempt"),
    ("previous_call_id", "previous_call_id"),
    ("first_call_id", "first_call_id"),
    ("next_call_id", "next_call_id"),
    ("not_before", "not_before"),
)

# Carrier statuses that are not also a call status or an outcome: a filter by one of them is
# most likely a client written against the carrier's words (or this API before #13).
_CARRIER_ONLY: Final = frozenset(CARRIER_STATUSES) - {*CALL_STATUSES, *OUTCOMES}
_STATUS_FILTER_HELP: Final = (
    f"a call status ({', '.join(CALL_STATUSES)}) or an outcome ({', '.join(OUTCOMES)})"
)


_DATE_TIME: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


class ListQuery(BaseModel):
    """Query parameters of GET /calls."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    page: int = Field(default=1, ge=1, le=1_000_000)
    page_size: int = Field(default=20, ge=1, le=100)
    direction: Literal["inbound", "outbound"] | None = None
    status: str | None = Field(default=None, description=_STATUS_FILTER_HELP)
    # no NUL: PostgreSQL text cannot hold one (the query would fail, not match nothing)
    search: str | None = Field(default=None, min_length=1, max_length=32, pattern=r"^[^\x00]*$")
    agent_id: uuid.UUID | None = None
    from_: AwareDatetime | None = Field(default=None, alias="from")
    to: AwareDatetime | None = None

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _date_time(cls, value: object) -> object:
        # pydantic would read "50" as a Unix timestamp; the API speaks ISO 8601 only
        if isinstance(value, str) and not _DATE_TIME.match(value):
            raise ValueError("must be an ISO 8601 date-time with an offset, e.g. 2025-01-31T09:00Z")
        return value

    @field_validator("status")
    @classmethod
    def _known_status(cls, value: str | None) -> str | None:
        if value is None or value in CALL_STATUSES or value in OUTCOMES:
            return value
        if value in _CARRIER_ONLY:
            raise ValueError(
                f"'{value}' is a carrier status (the carrier_status field), not a call status:"
                f" a call the carrier is dialing or ringing has status in-progress; filter by"
                f" {_STATUS_FILTER_HELP}"
            )
        raise ValueError(f"must be {_STATUS_FILTER_HELP}")


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _columns(fields: tuple[tuple[str, str], ...], prefix: str = "") -> str:
    return ", ".join(dict.fromkeys(prefix + column for _, column in fields))


def _item(row: dict[str, Any], fields: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return {name: _iso(row[column]) for name, column in fields}


async def list_calls(conn: Conn, organization_id: str, q: ListQuery) -> dict[str, Any]:
    where = ["organization_id = %s"]
    params: list[Any] = [organization_id]
    if q.direction:
        where.append("direction = %s")
        params.append(q.direction)
    if q.status:
        # a name that is a status filters on status ("completed" is both: status wins)
        where.append("status = %s" if q.status in CALL_STATUSES else "outcome = %s")
        params.append(q.status)
    if q.search:
        # LIKE so the trigram indexes apply; the search is escaped, so it matches literally
        where.append("(to_number LIKE %s ESCAPE '\\' OR from_number LIKE %s ESCAPE '\\')")
        params += [contains_pattern(q.search)] * 2
    if q.agent_id:
        where.append("agent_id = %s")
        params.append(q.agent_id)
    # the start_time a call shows (sort_time), so the filter agrees with what is listed
    if q.from_:
        where.append("sort_time >= %s")
        params.append(q.from_)
    if q.to:
        where.append("sort_time < %s")
        params.append(q.to)
    clause = " AND ".join(where)
    if q.search or q.agent_id or q.from_ or q.to:
        cur = await conn.execute(
            f"SELECT count(*) AS total FROM call_log.calls WHERE {clause}", params
        )
    else:
        # status, outcome and direction are counted by the projector: no scan for the total
        cur = await conn.execute(
            f"SELECT coalesce(sum(calls), 0) AS total FROM call_log.call_counts WHERE {clause}",
            params,
        )
    total_row = await cur.fetchone()
    # Deferred join: the page's ids come from an index-only scan, so rows skipped by OFFSET
    # cost an index entry each instead of a table row each (deep pages stay cheap).
    cur = await conn.execute(
        f"SELECT {_columns(LIST_FIELDS, 'c.')} FROM call_log.calls c"
        f" JOIN (SELECT call_id FROM call_log.calls WHERE {clause}"
        "  ORDER BY sort_time DESC, call_id DESC LIMIT %s OFFSET %s) page USING (call_id)"
        " ORDER BY c.sort_time DESC, c.call_id DESC",
        [*params, q.page_size, (q.page - 1) * q.page_size],
    )
    return {
        "items": [_item(row, LIST_FIELDS) for row in await cur.fetchall()],
        "total": int(total_row["total"]) if total_row else 0,
        "page": q.page,
        "page_size": q.page_size,
    }


async def get_call(conn: Conn, organization_id: str, call_id: uuid.UUID) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"SELECT {_columns(DETAIL_FIELDS)} FROM call_log.calls"
        " WHERE call_id = %s AND organization_id = %s",
        (call_id, organization_id),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    item = _item(row, DETAIL_FIELDS)
    # extensions (campaigns): objects, empty when the request gave none
    item["variables"] = item["variables"] or {}
    item["metadata"] = item["metadata"] or {}
    return item


@dataclass(frozen=True)
class BatchCounts:
    queued: int = 0
    initiated: int = 0
    failed: int = 0
    canceled: int = 0


def batch_status(counts: BatchCounts, cancel_requested: bool) -> str:
    """queued → in-progress → completed, or canceled once a cancel was asked for."""
    if cancel_requested:
        return "canceled"
    if counts.queued == 0:
        return "completed"
    if counts.initiated or counts.failed:
        return "in-progress"
    return "queued"


def batch_bucket(status: str, outcome: str | None) -> BatchCallStatus:
    """Which count a call falls in: dialed calls count as initiated whatever came next, except
    those that failed (busy, no answer, refused…) and those canceled (before or at dialing)."""
    if status == QUEUED:
        return "queued"
    if outcome == "canceled":
        return "canceled"
    if status == FAILED:
        return "failed"
    return "initiated"


async def get_batch(conn: Conn, organization_id: str, batch_id: str) -> dict[str, Any] | None:
    cur = await conn.execute(
        "SELECT total, cancel_requested, duplicates_dropped, created_at, paused"
        " FROM call_log.batches WHERE batch_id = %s AND organization_id = %s",
        (batch_id, organization_id),
    )
    batch = await cur.fetchone()
    if batch is None:
        return None
    # one entry per recipient: its latest attempt (a retry is a call of its own)
    cur = await conn.execute(
        "SELECT DISTINCT ON (batch_index) call_id, to_number, status, outcome, carrier_status,"
        " call_sid, error_reason, attempt, count(*) OVER (PARTITION BY batch_index) AS attempts"
        " FROM call_log.calls"
        " WHERE batch_id = %s AND organization_id = %s ORDER BY batch_index, attempt DESC",
        (batch_id, organization_id),
    )
    calls = await cur.fetchall()
    tally: dict[str, int] = dict.fromkeys(BATCH_CALL_STATUSES, 0)
    buckets = [batch_bucket(c["status"], c["outcome"]) for c in calls]
    for bucket in buckets:
        tally[bucket] += 1
    counts = BatchCounts(**tally)
    return {
        "batch_id": batch_id,
        "status": batch_status(counts, batch["cancel_requested"]),
        "total": batch["total"],
        **tally,
        "duplicates_dropped": batch["duplicates_dropped"],
        "created_at": batch["created_at"].isoformat(),
        "paused": batch["paused"],
        "calls": [
            {
                "call_id": str(c["call_id"]),
                "to_number": c["to_number"],
                "status": bucket,
                # the call's own, as GET /calls/{id} shows them (extensions)
                "call_status": c["status"],
                "carrier_status": c["carrier_status"],
                "outcome": c["outcome"],
                # the batch page shows no placeholder: null until the carrier gave a SID
                "call_sid": None if is_placeholder_call_sid(c["call_sid"]) else c["call_sid"],
                "error": c["error_reason"] if bucket in ("failed", "canceled") else None,
                "attempt": c["attempt"],
                "attempts": c["attempts"],
            }
            for c, bucket in zip(calls, buckets, strict=True)
        ],
    }


def contains_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with LIKE's own characters taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
