"""``GET .../Calls.json`` semantics: query filters and Twilio list-page pagination (pure)."""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from carrier_sim.resources import call_resource
from carrier_sim.store import CallRecord

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
FILTER_KEYS = (
    "To",
    "From",
    "ParentCallSid",
    "Status",
    "StartTime",
    "StartTime<",
    "StartTime>",
    "EndTime",
    "EndTime<",
    "EndTime>",
)
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ListQueryError(ValueError):
    """A filter or paging parameter could not be understood."""


@dataclass(frozen=True)
class TimeWindow:
    """``[start, end)`` in epoch seconds: a whole UTC day, or one whole second."""

    start: float
    end: float


def parse_time_filter(value: str) -> TimeWindow:
    """``YYYY-MM-DD`` (what Twilio documents) or an ISO datetime (what twilio-python sends)."""
    text = value.strip()
    if _DATE_ONLY.match(text):
        try:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError as exc:
            raise ListQueryError(f"invalid date {value!r}") from exc
        start = float(calendar.timegm(day.timetuple()))
        return TimeWindow(start, start + 86400.0)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ListQueryError(f"invalid date {value!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    start = float(int(moment.timestamp()))
    return TimeWindow(start, start + 1.0)


def _time_ok(moment: float | None, query: Mapping[str, str], name: str) -> bool:
    for suffix in ("", "<", ">"):
        raw = query.get(name + suffix)
        if not raw:
            continue
        if moment is None:
            return False
        window = parse_time_filter(raw)
        if suffix == "" and not window.start <= moment < window.end:
            return False
        if suffix == "<" and not moment < window.start:
            return False
        if suffix == ">" and not moment >= window.start:
            return False
    return True


def matches(call: CallRecord, query: Mapping[str, str]) -> bool:
    """Whether a call passes the list filters (StartTime uses start time, else creation)."""
    if query.get("To") and call.to != query["To"]:
        return False
    if query.get("From") and call.from_ != query["From"]:
        return False
    if query.get("Status") and call.status != query["Status"]:
        return False
    if query.get("ParentCallSid"):
        return False  # the simulator never creates child calls
    started = call.start_time if call.start_time is not None else call.created_at
    return _time_ok(started, query, "StartTime") and _time_ok(call.end_time, query, "EndTime")


def _int_param(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ListQueryError(f"{name} must be an integer") from exc


def calls_page(
    calls: Sequence[CallRecord], query: Mapping[str, str], list_uri: str
) -> dict[str, Any]:
    """A Twilio list page of ``calls`` (newest first) filtered and paged per ``query``."""
    filters = [(key, query[key]) for key in FILTER_KEYS if query.get(key)]
    selected = [call for call in reversed(calls) if matches(call, query)]
    page_size = min(MAX_PAGE_SIZE, max(1, _int_param(query, "PageSize", DEFAULT_PAGE_SIZE)))
    page = max(0, _int_param(query, "Page", 0))
    offset = page * page_size
    token = query.get("PageToken") or ""
    if token.startswith("PA"):
        after = token[2:]
        for index, call in enumerate(selected):
            if call.sid == after:
                offset = index + 1
                break
    items = selected[offset : offset + page_size]

    def uri(page_number: int, page_token: str | None = None) -> str:
        params = [*filters, ("PageSize", str(page_size)), ("Page", str(page_number))]
        if page_token:
            params.append(("PageToken", page_token))
        return f"{list_uri}?{urlencode(params)}"

    has_more = offset + len(items) < len(selected)
    return {
        "calls": [call_resource(call) for call in items],
        "end": offset + max(0, len(items) - 1),
        "first_page_uri": uri(0),
        "next_page_uri": uri(page + 1, "PA" + items[-1].sid) if has_more and items else None,
        "page": page,
        "page_size": page_size,
        "previous_page_uri": uri(page - 1) if page > 0 else None,
        "start": offset,
        "uri": uri(page, token or None),
    }
