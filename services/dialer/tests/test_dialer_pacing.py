"""The token bucket that paces dials (pure: time is passed in)."""

from __future__ import annotations

import itertools

import pytest
from dialer.pacing import TokenBucket


def test_a_full_bucket_gives_one_token_then_makes_the_next_wait_one_interval() -> None:
    bucket = TokenBucket(rate=4.0)
    assert bucket.try_take(100.0)
    assert not bucket.try_take(100.0)
    assert bucket.wait_time(100.0) == pytest.approx(0.25)
    assert bucket.wait_time(100.1) == pytest.approx(0.15)
    assert not bucket.try_take(100.2)
    assert bucket.try_take(100.25)


def test_an_empty_bucket_waits_a_whole_interval_before_the_first_token() -> None:
    bucket = TokenBucket(rate=4.0, tokens=0.0)
    assert bucket.wait_time(10.0) == pytest.approx(0.25)
    assert not bucket.try_take(10.125)
    assert bucket.wait_time(10.25) == 0.0
    assert bucket.try_take(10.25)


def test_takes_over_a_long_run_never_exceed_the_rate() -> None:
    bucket = TokenBucket(rate=10.0, tokens=0.0)
    taken = [t / 1000 for t in range(0, 5000) if bucket.try_take(t / 1000)]
    assert len(taken) <= 10 * 5
    gaps = [b - a for a, b in itertools.pairwise(taken)]
    assert min(gaps) >= 0.1 - 1e-9


def test_no_burst_after_idling_beyond_capacity() -> None:
    bucket = TokenBucket(rate=10.0, capacity=3.0, tokens=0.0)
    bucket.wait_time(0.0)
    # an hour idle refills only up to the capacity
    assert [bucket.try_take(3600.0) for _ in range(5)] == [True, True, True, False, False]
    assert bucket.wait_time(3600.0) == pytest.approx(0.1)


def test_capacity_one_means_strictly_even_spacing_after_idle() -> None:
    bucket = TokenBucket(rate=2.0)
    bucket.wait_time(0.0)
    assert bucket.try_take(60.0)
    assert not bucket.try_take(60.0)
    assert bucket.wait_time(60.0) == pytest.approx(0.5)


def test_initial_tokens_above_capacity_are_capped() -> None:
    bucket = TokenBucket(rate=1.0, capacity=2.0, tokens=50.0)
    assert bucket.tokens == 2.0
    assert [bucket.try_take(0.0) for _ in range(3)] == [True, True, False]


def test_time_going_backwards_neither_refills_nor_breaks_the_bucket() -> None:
    bucket = TokenBucket(rate=1.0)
    assert bucket.try_take(10.0)
    assert not bucket.try_take(5.0)
    assert bucket.wait_time(10.5) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("rate", "capacity"),
    [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.5), (1.0, 0.0)],
)
def test_invalid_rate_or_capacity_is_refused(rate: float, capacity: float) -> None:
    with pytest.raises(ValueError, match=r"^(rate|capacity)"):
        TokenBucket(rate=rate, capacity=capacity)


def _dial_loop(bucket: TokenBucket, late_by: list[float], dials: int) -> list[float]:
    """The dial loop's use of the bucket (scheduler.DialLoop.run) on a simulated clock that
    wakes `late_by[i % len]` seconds after each wait it was asked to sleep."""
    now, wakes = 0.0, itertools.cycle(late_by)
    taken: list[float] = []
    while len(taken) < dials:
        wait = bucket.wait_time(now)
        if wait > 0:
            now += wait + next(wakes)
            continue
        assert bucket.try_take(now)
        taken.append(now)
    return taken


@pytest.mark.parametrize("rate", [1.0, 10.0, 20.0])
def test_a_loop_that_wakes_late_keeps_the_rate_when_the_bucket_carries_the_lateness(
    rate: float,
) -> None:
    from dialer.scheduler import CARRY, MIN_GAP

    # seconds, what asyncio.sleep overshoots by here: within the carry (5 % of an interval,
    # 2.5 ms at 20 CPS), so each is made up at the next dial
    late = [0.0004, 0.0021, 0.0009, 0.0015]
    kept = _dial_loop(TokenBucket(rate, capacity=1 + CARRY, tokens=0.0), late, 1000)
    achieved = (len(kept) - 1) / (kept[-1] - kept[0])
    assert achieved == pytest.approx(rate, rel=0.001)
    gaps = [b - a for a, b in itertools.pairwise(kept)]
    assert min(gaps) >= MIN_GAP / rate - 1e-9
    # capped at exactly one token, every wake's lateness is added to its interval for good
    capped = _dial_loop(TokenBucket(rate, capacity=1.0, tokens=0.0), late, 1000)
    lost = (len(capped) - 1) / (capped[-1] - capped[0])
    assert lost == pytest.approx(1 / (1 / rate + sum(late) / len(late)), rel=0.001)
    assert lost < rate * (1 - 0.9 * rate * sum(late) / len(late))


def test_a_long_stall_is_not_made_up_with_a_burst() -> None:
    from dialer.scheduler import CARRY

    bucket = TokenBucket(rate=20.0, capacity=1 + CARRY, tokens=0.0)
    bucket.wait_time(0.0)
    # a 2-second stall (a database failover): one token and the carry, never forty
    assert [bucket.try_take(2.0) for _ in range(2)] == [True, False]
    assert bucket.wait_time(2.0) == pytest.approx((1 - CARRY) / 20.0)
