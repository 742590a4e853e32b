"""Unit: the pure rules: Range headers, WAV headers, storage keys, retry delays."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from recordings.domain import (
    ByteRange,
    InvalidRecordingSid,
    RangeNotSatisfiable,
    RetryPolicy,
    is_storage_key,
    is_wav,
    parse_range,
    storage_key,
)
from recordings.storage import check_key

SIZE = 1000
CALL_ID = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
SID = "RE" + "0123456789abcdef" * 2

# --- Range -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=0-0", (0, 0)),
        ("bytes=999-999", (999, 999)),
        ("bytes=500-5000", (500, 999)),  # clamped to the end
        ("bytes=-5000", (0, 999)),  # more than there is: all of it
        ("bytes=0-", (0, 999)),
        (" bytes=10-20 ", (10, 20)),
    ],
)
def test_a_single_range_is_resolved_against_the_size(
    header: str, expected: tuple[int, int]
) -> None:
    byte_range = parse_range(header, SIZE)
    assert byte_range == ByteRange(*expected, SIZE)
    assert byte_range.length == expected[1] - expected[0] + 1
    assert byte_range.content_range == f"bytes {expected[0]}-{expected[1]}/{SIZE}"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=",
        "bytes=-",
        "bytes=abc-def",
        "bytes=20-10",  # last before first: invalid, ignored
        "bytes=0-1,5-9",  # several ranges: not supported, the whole file is served
        "items=0-10",
        "bytes 0-10",
        "bytes=\u0661-\u0662",  # Arabic-Indic digits are not digits here
        "bytes=" + "9" * 5000 + "-",  # would make int() slow or raise
    ],
)
def test_a_missing_or_unusable_range_means_the_whole_file(header: str | None) -> None:
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-2000", "bytes=5000-", "bytes=-0"])
def test_a_range_past_the_end_is_not_satisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as exc:
        parse_range(header, SIZE)
    assert exc.value.content_range == f"bytes */{SIZE}"


def test_nothing_of_an_empty_file_is_satisfiable() -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=-1", 0)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-", 0)


@given(
    size=st.integers(min_value=1, max_value=10**9),
    first=st.integers(min_value=0, max_value=10**9),
    length=st.integers(min_value=0, max_value=10**9),
)
def test_any_satisfiable_range_lies_within_the_file(size: int, first: int, length: int) -> None:
    try:
        byte_range = parse_range(f"bytes={first}-{first + length}", size)
    except RangeNotSatisfiable:
        assert first >= size
        return
    assert byte_range is not None
    assert 0 <= byte_range.start <= byte_range.end < size
    assert byte_range.start == first


# --- WAV ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "wav"),
    [
        (b"RIFF\x24\x08\x00\x00WAVEfmt ", True),
        (b"RIFF\x00\x00\x00\x00WAVE", True),
        (b"RIFF\x00\x00\x00\x00AVI ", False),
        (b"RIFX\x00\x00\x00\x00WAVE", False),
        (b"<html><body>", False),
        (b"RIFF", False),
        (b"", False),
    ],
)
def test_a_wav_starts_with_riff_and_wave(header: bytes, wav: bool) -> None:
    assert is_wav(header) is wav


# --- storage keys -------------------------------------------------------------------------------


def test_a_storage_key_is_made_of_the_org_hash_the_call_and_the_recording() -> None:
    key = storage_key("org_a", CALL_ID, SID)

    org_hash, call, name = key.split("/")
    assert len(org_hash) == 16
    assert int(org_hash, 16) >= 0
    assert (call, name) == (str(CALL_ID), f"{SID}.wav")
    assert is_storage_key(key)
    check_key(key)


def test_organizations_get_different_keys_whatever_their_ids_contain() -> None:
    keys = {storage_key(org, CALL_ID, SID) for org in ("a", "b", "../..", "a/b", "", "\x00")}
    assert len(keys) == 6
    assert all(is_storage_key(k) for k in keys)


@pytest.mark.parametrize(
    "sid",
    [
        "RE" + "0" * 31,
        "RE" + "0" * 33,
        "RE" + "A" * 32,
        "CA" + "0" * 32,
        "RE" + "0" * 30 + "/x",
        "../../../../etc/passwd",
        "RE" + "0" * 32 + "\n",
        "",
    ],
)
def test_a_storage_key_refuses_anything_but_a_recording_sid(sid: str) -> None:
    with pytest.raises(InvalidRecordingSid):
        storage_key("org_a", CALL_ID, sid)


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../x.wav", "a/../../x.wav", "a//b.wav", "a/./b.wav", "a\\b", "a/b\x00"],
)
def test_an_unsafe_key_is_refused_by_the_adapters_check(key: str) -> None:
    assert not is_storage_key(key)
    with pytest.raises(ValueError, match="unsafe storage key"):
        check_key(key)


# --- retries ------------------------------------------------------------------------------------


def test_delays_double_from_the_base_up_to_the_ceiling() -> None:
    policy = RetryPolicy(max_attempts=8, base_seconds=1, max_seconds=10, jitter=0)

    assert [policy.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_jitter_takes_up_to_its_share_off_each_delay() -> None:
    policy = RetryPolicy(base_seconds=4, max_seconds=30, jitter=0.5)

    assert policy.delay(1, rand=lambda: 0.0) == 4
    assert policy.delay(1, rand=lambda: 1.0) == 2
    assert 2 <= policy.delay(1) <= 4


def test_attempts_stop_at_the_maximum() -> None:
    policy = RetryPolicy(max_attempts=3)

    assert [policy.should_retry(n) for n in (1, 2, 3, 4)] == [True, True, False, False]


def test_a_single_attempt_is_never_retried() -> None:
    assert not RetryPolicy(max_attempts=1).should_retry(1)


@pytest.mark.parametrize(
    "changes",
    [{"max_attempts": 0}, {"base_seconds": -1}, {"max_seconds": -1}, {"jitter": 1.5}],
)
def test_nonsense_policies_are_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryPolicy(**changes)  # type: ignore[arg-type]
