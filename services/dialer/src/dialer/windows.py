"""Calling windows in local time (pure): in which zones a number rings, whether a window is
open at an instant in all of them, and when it next opens.

DST-correct by construction: every instant is converted to each zone's local time with
zoneinfo, and openings are found at the windows' local start times, day by day.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from calls_events import WEEKDAYS, CallingWindow
from phonenumbers import timezone as number_zones

# how far ahead an opening is looked for (a window open one day a week opens within 8 days)
HORIZON_DAYS = 8
FALLBACK_ZONE = "UTC"


@lru_cache(maxsize=65_536)
def zones_of_number(number: str) -> tuple[str, ...]:
    """The time zones a number may ring in (phonenumbers' geographic data): those of the
    number, or, for one the data does not know as valid, those of its prefix (its area or
    country). A number placed nowhere gets UTC (documented: give such a recipient its own
    `time_zone`)."""
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return (FALLBACK_ZONE,)
    for lookup in (
        number_zones.time_zones_for_number,
        number_zones.time_zones_for_geographical_number,
    ):
        zones = tuple(z for z in lookup(parsed) if z != "Etc/Unknown")
        if zones:
            return zones
    return (FALLBACK_ZONE,)


def zones_for(window: CallingWindow, number: str) -> tuple[str, ...]:
    if window.time_zone == "recipient":
        return zones_of_number(number)
    return (window.time_zone,)


def _clock(text: str) -> time:
    parts = [int(p) for p in text.split(":")]
    return time(parts[0], parts[1], parts[2] if len(parts) > 2 else 0)


def _open_in(window: CallingWindow, zone: ZoneInfo, at: datetime) -> bool:
    local = at.astimezone(zone)
    start, end, now = _clock(window.start), _clock(window.end), local.time()
    today = WEEKDAYS[local.weekday()]
    yesterday = WEEKDAYS[(local.weekday() - 1) % 7]
    if start == end:  # the whole day, midnight to midnight
        return today in window.days
    if start < end:
        return today in window.days and start <= now < end
    # spans midnight: the evening belongs to today, the early hours to the day before
    return (now >= start and today in window.days) or (now < end and yesterday in window.days)


def is_open(window: CallingWindow, zones: tuple[str, ...], at: datetime) -> bool:
    """Whether the window is open at `at` in every one of `zones`."""
    return all(_open_in(window, ZoneInfo(zone), at) for zone in zones)


def _starts(window: CallingWindow, zone: ZoneInfo, after: datetime) -> list[datetime]:
    """The instants the window opens in `zone` from the day before `after` for the horizon."""
    # a window whose end is its start is the whole of each day it names: it opens at midnight
    start = _clock(window.start)
    if start == _clock(window.end):
        start = time(0, 0)
    first = after.astimezone(zone).date() - timedelta(days=1)
    out = []
    for offset in range(HORIZON_DAYS + 2):
        day = first + timedelta(days=offset)
        # a start inside a DST gap resolves to the instant after the gap's jump (fold=0)
        local = datetime.combine(day, start, tzinfo=zone)
        out.append(local.astimezone(UTC))
    return out


def next_open(window: CallingWindow, zones: tuple[str, ...], at: datetime) -> datetime | None:
    """The first instant at or after `at` when the window is open in every zone, or None if
    that is not within the horizon (the zones' windows never overlap, or no day is allowed).
    Open in all zones first happens either now or when one of them opens."""
    if is_open(window, zones, at):
        return at
    candidates = sorted(
        {s for zone in zones for s in _starts(window, ZoneInfo(zone), at) if s > at}
    )
    for candidate in candidates:
        if is_open(window, zones, candidate):
            return candidate
    return None
