"""Calling windows in local time (pure): open or closed at an instant in every zone, the next
opening, DST, numbers in several zones; properties checked with hypothesis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from calls_events import WEEKDAYS, CallingWindow
from dialer import windows
from hypothesis import given, settings
from hypothesis import strategies as st

NINE_TO_EIGHT = CallingWindow(start="09:00", end="20:00")
NEW_YORK = ("America/New_York",)


def at(text: str, zone: str = "UTC") -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def test_a_number_rings_in_the_zones_of_its_area() -> None:
    assert windows.zones_of_number("+14155550100") == ("America/Los_Angeles",)
    assert windows.zones_of_number("+12125550100") == ("America/New_York",)
    assert windows.zones_of_number("+33612345678") == ("Europe/Paris",)
    assert len(windows.zones_of_number("+61412345678")) > 1  # an Australian mobile: any zone


def test_a_number_not_known_as_valid_rings_in_the_zones_of_its_area() -> None:
    assert windows.zones_of_number("+16501871001") == ("America/Los_Angeles",)  # exchange 187


def test_a_number_placed_nowhere_falls_back_to_utc() -> None:
    assert windows.zones_of_number("+80012345678") == ("UTC",)  # international freephone


def test_an_iana_zone_overrides_the_number() -> None:
    window = CallingWindow(start="09:00", end="20:00", time_zone="Asia/Tokyo")
    assert windows.zones_for(window, "+14155550100") == ("Asia/Tokyo",)
    assert windows.zones_for(NINE_TO_EIGHT, "+14155550100") == ("America/Los_Angeles",)


def test_open_from_start_until_just_before_end_in_local_time() -> None:
    assert not windows.is_open(NINE_TO_EIGHT, NEW_YORK, at("2026-03-02T08:59:59", NEW_YORK[0]))
    assert windows.is_open(NINE_TO_EIGHT, NEW_YORK, at("2026-03-02T09:00:00", NEW_YORK[0]))
    assert windows.is_open(NINE_TO_EIGHT, NEW_YORK, at("2026-03-02T19:59:59", NEW_YORK[0]))
    assert not windows.is_open(NINE_TO_EIGHT, NEW_YORK, at("2026-03-02T20:00:00", NEW_YORK[0]))


def test_only_on_the_days_named_in_local_time() -> None:
    weekdays = CallingWindow(start="09:00", end="20:00", days=("mon", "tue", "wed", "thu", "fri"))
    saturday_noon = at("2026-03-07T12:00:00", NEW_YORK[0])
    assert not windows.is_open(weekdays, NEW_YORK, saturday_noon)
    monday_nine = at("2026-03-09T09:00:00", NEW_YORK[0])
    assert windows.next_open(weekdays, NEW_YORK, saturday_noon) == monday_nine.astimezone(UTC)


def test_a_window_across_midnight_belongs_to_the_day_it_starts() -> None:
    nights = CallingWindow(start="22:00", end="02:00", days=("fri",), time_zone="UTC")
    assert windows.is_open(nights, ("UTC",), at("2026-03-06T23:00:00"))  # Friday
    assert windows.is_open(nights, ("UTC",), at("2026-03-07T01:00:00"))  # Saturday early
    assert not windows.is_open(nights, ("UTC",), at("2026-03-07T23:00:00"))  # Saturday night
    assert not windows.is_open(nights, ("UTC",), at("2026-03-06T01:00:00"))  # Friday early


def test_the_next_opening_is_now_when_open() -> None:
    noon = at("2026-03-02T12:00:00", NEW_YORK[0])
    assert windows.next_open(NINE_TO_EIGHT, NEW_YORK, noon) == noon


def test_the_next_opening_follows_daylight_saving_time() -> None:
    # New York springs forward on 8 March 2026: 09:00 local is 14:00 UTC before, 13:00 after
    evening_before = at("2026-03-07T21:00:00", NEW_YORK[0])
    assert windows.next_open(NINE_TO_EIGHT, NEW_YORK, evening_before) == at("2026-03-08T13:00:00")
    friday_evening = at("2026-03-06T21:00:00", NEW_YORK[0])
    assert windows.next_open(NINE_TO_EIGHT, NEW_YORK, friday_evening) == at("2026-03-07T14:00:00")


def test_several_zones_open_only_when_open_in_all() -> None:
    both = ("America/New_York", "America/Los_Angeles")  # 3 h apart
    # 10:00 in New York is 07:00 in Los Angeles: closed there
    ten_in_new_york = at("2026-03-02T10:00:00", "America/New_York")
    assert not windows.is_open(NINE_TO_EIGHT, both, ten_in_new_york)
    assert windows.next_open(NINE_TO_EIGHT, both, ten_in_new_york) == at(
        "2026-03-02T09:00:00", "America/Los_Angeles"
    ).astimezone(UTC)


def test_zones_whose_windows_never_overlap_have_no_opening() -> None:
    apart = ("Pacific/Kiritimati", "Pacific/Pago_Pago")  # 25 hours apart
    short = CallingWindow(start="09:00", end="10:00")
    assert windows.next_open(short, apart, at("2026-03-02T00:00:00")) is None


zones = st.sampled_from(
    [
        "America/New_York",
        "America/Los_Angeles",
        "Europe/London",
        "Europe/Paris",
        "Australia/Sydney",
        "Asia/Kolkata",
        "Pacific/Auckland",
        "America/St_Johns",
        "Asia/Kathmandu",
    ]
)
clock = st.times().map(lambda t: t.replace(microsecond=0).strftime("%H:%M:%S"))
instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)
window_strategy = st.builds(
    CallingWindow,
    start=clock,
    end=clock,
    days=st.sets(st.sampled_from(WEEKDAYS), min_size=1).map(
        lambda days: tuple(d for d in WEEKDAYS if d in days)
    ),
    time_zone=st.just("recipient"),
)


def _hms(text: str) -> str:
    return text if len(text) == 8 else f"{text}:00"


@settings(max_examples=300, deadline=None)
@given(window=window_strategy, zone_set=st.sets(zones, min_size=1, max_size=3), now=instants)
def test_a_dial_time_the_function_allows_is_inside_the_window_in_every_zone(
    window: CallingWindow, zone_set: set[str], now: datetime
) -> None:
    chosen = tuple(sorted(zone_set))
    opens = windows.next_open(window, chosen, now)
    if opens is None:
        return
    assert opens >= now
    # checked on the local wall clock, independently of is_open: inside start..end (end
    # excluded) on an allowed day, in every zone
    start, end = _hms(window.start), _hms(window.end)
    for zone in chosen:
        local = opens.astimezone(ZoneInfo(zone))
        hms, day = local.strftime("%H:%M:%S"), WEEKDAYS[local.weekday()]
        if start < end:
            assert start <= hms < end, (zone, local)
            assert day in window.days, (zone, local)
        elif start > end:  # across midnight
            before = WEEKDAYS[(local.weekday() - 1) % 7]
            assert (hms >= start and day in window.days) or (hms < end and before in window.days)
        else:
            assert day in window.days


fixed_offsets = st.sampled_from(["UTC", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Tokyo"])


@settings(max_examples=60, deadline=None)
@given(
    window=window_strategy, zone_set=st.sets(fixed_offsets, min_size=1, max_size=2), now=instants
)
def test_no_earlier_minute_is_open_than_the_opening_found(
    window: CallingWindow, zone_set: set[str], now: datetime
) -> None:
    # zones without DST (in a DST gap a start time that does not exist opens late, never early)
    chosen = tuple(sorted(zone_set))
    opens = windows.next_open(window, chosen, now)
    if opens is None or opens == now:
        return
    step, probe = timedelta(minutes=1), opens - timedelta(minutes=1)
    for _ in range(24 * 60):
        if probe < now:
            break
        assert not windows.is_open(window, chosen, probe), probe
        probe -= step
