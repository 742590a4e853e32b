"""The rules of handling call audio, pure: which recording SIDs and storage keys are acceptable,
what a WAV file starts with, which byte range a Range header asks for, how long to wait
before downloading again."""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from calls_events import RECORDING_SID

WAV_CONTENT_TYPE: Final = "audio/wav"
# What a WAV header must have: "RIFF", the chunk size (any 4 bytes), "WAVE".
WAV_HEADER_BYTES: Final = 12

_SID: Final = re.compile(RECORDING_SID)
# <16 hex of the organization's hash>/<call uuid>/<recording sid>.wav
STORAGE_KEY: Final = re.compile(
    r"^[0-9a-f]{16}/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/RE[0-9a-f]{32}\.wav$"
)


class InvalidRecordingSid(ValueError):
    pass


def storage_key(organization_id: str, call_id: uuid.UUID, recording_sid: str) -> str:
    """Where a recording is stored, built only from ids we have validated: the organization
    (hashed, so any string is safe), the call's UUID and the carrier's RE… SID."""
    if not isinstance(recording_sid, str) or not _SID.fullmatch(recording_sid):
        raise InvalidRecordingSid(f"not a recording SID: {recording_sid!r}")
    org = hashlib.sha256(organization_id.encode()).hexdigest()[:16]
    return f"{org}/{uuid.UUID(str(call_id))}/{recording_sid}.wav"


def is_storage_key(key: str) -> bool:
    return bool(STORAGE_KEY.fullmatch(key))


def is_wav(header: bytes) -> bool:
    """Whether `header` (the first bytes of a file) is that of a RIFF/WAVE file."""
    return len(header) >= WAV_HEADER_BYTES and header[:4] == b"RIFF" and header[8:12] == b"WAVE"


# --- Range (RFC 9110 §14) ---------------------------------------------------------------------


@dataclass(frozen=True)
class ByteRange:
    """Bytes `start` to `end`, both inclusive, of a representation of `size` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


class RangeNotSatisfiable(Exception):
    """The Range asks only for bytes past the end (416, with `Content-Range: bytes */size`)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"no such bytes in a representation of {size} bytes")
        self.size = size

    @property
    def content_range(self) -> str:
        return f"bytes */{self.size}"


# [0-9], not \d (which matches other scripts' digits too); at most 18 digits, so int() is cheap
_RANGE: Final = re.compile(r"bytes=(?:([0-9]{1,18})-([0-9]{0,18})|-([0-9]{1,18}))")


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range `header` asks for, clamped to `size`; None for the whole file.

    Supported: `bytes=a-b`, `bytes=a-`, `bytes=-n` (the last n bytes). A header that does not
    parse, or asks for several ranges, is ignored (the whole file is served, as RFC 9110
    allows). A range that starts past the end raises RangeNotSatisfiable.
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last, suffix = match.groups()
    if suffix is not None:
        wanted = int(suffix)
        if wanted == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return ByteRange(max(0, size - wanted), size - 1, size)
    start = int(first)
    end = int(last) if last else None
    if end is not None and end < start:
        return None  # invalid: ignored
    if start >= size:
        raise RangeNotSatisfiable(size)
    return ByteRange(start, size - 1 if end is None else min(end, size - 1), size)


# --- retrying downloads -----------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter between download attempts.

    The wait after attempt n (1-based) is `base_seconds * 2**(n-1)`, capped at `max_seconds`,
    then scaled by a random factor in [1 - jitter, 1] so that replicas retrying after the same
    outage do not all hit the carrier at once.
    """

    max_attempts: int = 5
    base_seconds: float = 1.0
    max_seconds: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_seconds < 0 or self.max_seconds < 0 or not 0 <= self.jitter <= 1:
            raise ValueError("delays must be non-negative and jitter within [0, 1]")

    def should_retry(self, attempt: int) -> bool:
        """Whether another attempt may follow attempt number `attempt` (1-based)."""
        return attempt < self.max_attempts

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after attempt number `attempt` (1-based) failed."""
        ceiling = min(self.max_seconds, self.base_seconds * 2.0 ** max(0, attempt - 1))
        return ceiling * (1 - self.jitter * rand())
