"""The dialer's campaign decisions (pure, clock passed in): dial now, put off, expire, skip;
and whether a call that ended gets another attempt."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from calls_events import CallingWindow, RetryPolicy, Schedule
from dialer import campaigns
from dialer.campaigns import Defer, DialNow, Expire, Retry, Skip
from hypothesis import given
from hypothesis import strategies as st

NOW = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)  # a Monday: 12:00 in New York
NEW_YORK_NUMBER = "+12125550100"
LOS_ANGELES_NUMBER = "+14155550100"  # 09:00 there


def decide(schedule: Schedule | None, **kwargs: object) -> campaigns.Decision:
    args: dict[str, object] = {
        "to_number": NEW_YORK_NUMBER,
        "schedule": schedule,
        "now": NOW,
        "do_not_call": False,
    }
    args.update(kwargs)
    return campaigns.decide(**args)  # type: ignore[arg-type]


def test_a_call_without_rules_is_dialed_now() -> None:
    assert decide(None) == DialNow()
    assert decide(Schedule()) == DialNow()


def test_a_listed_number_is_skipped_whatever_its_schedule() -> None:
    assert decide(None, do_not_call=True) == Skip("do_not_call")
    past = Schedule(end_at=NOW - timedelta(hours=1))
    assert decide(past, do_not_call=True) == Skip("do_not_call")


def test_past_end_at_the_call_expires() -> None:
    end_at = NOW - timedelta(seconds=1)
    assert decide(Schedule(end_at=end_at)) == Expire(end_at)
    assert decide(Schedule(end_at=NOW)) == Expire(NOW)


def test_before_start_at_the_call_waits_for_it() -> None:
    start_at = NOW + timedelta(minutes=5)
    assert decide(Schedule(start_at=start_at)) == Defer(start_at, "start_at")


def test_outside_its_window_in_the_recipients_zone_the_call_waits_for_the_opening() -> None:
    window = CallingWindow(start="10:00", end="20:00")  # 07:00 in Los Angeles now
    assert decide(Schedule(window=window)) == DialNow()  # 12:00 in New York
    opens_in_los_angeles = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
    assert decide(Schedule(window=window), to_number=LOS_ANGELES_NUMBER) == Defer(
        opens_in_los_angeles, "window"
    )


def test_a_wait_that_would_end_after_end_at_ends_at_end_at() -> None:
    window = CallingWindow(start="21:00", end="22:00")
    end_at = NOW + timedelta(hours=1)
    assert decide(Schedule(window=window, end_at=end_at)) == Defer(end_at, "window")


def test_a_number_at_its_daily_cap_waits_until_a_call_leaves_the_24_hours() -> None:
    frees = NOW + timedelta(hours=3)
    assert decide(None, cap_frees_at=frees) == Defer(frees, "daily_cap")
    assert decide(None, cap_frees_at=NOW) == DialNow()


def policy(**changes: object) -> RetryPolicy:
    data: dict[str, object] = {
        "max_attempts": 3,
        "on": ("busy", "no_answer", "voicemail"),
        "delay_seconds": 60,
    }
    data.update(changes)
    return RetryPolicy.model_validate(data)


def retry(
    p: RetryPolicy | None, attempt: int, status: str, answered_by: str | None = None
) -> Retry | None:
    return campaigns.retry_after(
        p, attempt=attempt, carrier_status=status, answered_by=answered_by, now=NOW
    )


def test_a_busy_line_is_retried_after_the_delay() -> None:
    assert retry(policy(), 1, "busy") == Retry(2, NOW + timedelta(seconds=60), "busy")


def test_no_retry_past_max_attempts() -> None:
    assert retry(policy(), 2, "busy") is not None
    assert retry(policy(), 3, "busy") is None
    assert retry(policy(max_attempts=1), 1, "busy") is None


def test_only_the_endings_the_policy_names_are_retried() -> None:
    assert retry(policy(on=("busy",)), 1, "no-answer") is None
    assert retry(policy(), 1, "completed", "human") is None
    assert retry(policy(), 1, "completed", "machine_start") is not None  # voicemail
    assert retry(policy(), 1, "failed") is None  # not in `on`
    assert retry(policy(on=("failed",)), 1, "failed") is not None
    assert retry(policy(), 1, "canceled") is None
    assert retry(None, 1, "busy") is None


def test_backoff_multiplies_the_delay_per_attempt() -> None:
    p = policy(max_attempts=5, delay_seconds=10, backoff=2)
    delays = [retry(p, n, "busy") for n in (1, 2, 3)]
    assert [d.not_before - NOW for d in delays if d] == [
        timedelta(seconds=10),
        timedelta(seconds=20),
        timedelta(seconds=40),
    ]


@given(
    max_attempts=st.integers(1, 5),
    statuses=st.lists(
        st.sampled_from(["busy", "no-answer", "completed", "failed"]), min_size=1, max_size=10
    ),
)
def test_never_more_attempts_than_asked(max_attempts: int, statuses: list[str]) -> None:
    p = policy(max_attempts=max_attempts, on=("busy", "no_answer", "failed"))
    attempt = 1
    for status in statuses:
        nxt = retry(p, attempt, status)
        if nxt is None:
            break
        assert nxt.attempt == attempt + 1
        attempt = nxt.attempt
    assert attempt <= max_attempts


def test_a_retry_has_an_id_derived_from_the_call_before() -> None:
    call_id = uuid.uuid4()
    assert campaigns.retry_call_id(call_id) == campaigns.retry_call_id(call_id)
    assert campaigns.retry_call_id(call_id) != call_id
