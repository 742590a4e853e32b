"""Fetching a recording's audio from the carrier: `RecordingUrl` + ".wav" with the account's
Basic auth, streamed into a local spool file, checked as it arrives (a WAV header, at most
RECORDINGS_MAX_BYTES), and retried with backoff when the failure is transient.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import BinaryIO, Final

import aiohttp
import structlog
from prometheus_client import Counter

from .domain import WAV_HEADER_BYTES, RetryPolicy, is_wav
from .storage import CHUNK_BYTES

log = structlog.get_logger(__name__)

RECORDING_DOWNLOADS = Counter(
    "recording_downloads_total",
    "Recording downloads by result: stored, retried (a transient failure, tried again),"
    " failed (gave up), refused (not a WAV, or too large)",
    ["result"],
)

# Answers worth asking again: the carrier is overloaded, restarting, or throttling us.
_TRANSIENT_STATUSES: Final = frozenset({408, 425, 429})


class DownloadFailed(Exception):
    """A download attempt failed. `transient`: another attempt may succeed. `refused`: what the
    carrier sent is not acceptable (not a WAV, too large); never retried."""

    def __init__(self, reason: str, *, transient: bool = False, refused: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient and not refused
        self.refused = refused


class GaveUp(Exception):
    """Every attempt failed, or one failed for good."""

    def __init__(self, last: DownloadFailed, attempts: int) -> None:
        super().__init__(last.reason)
        self.reason = last.reason
        self.refused = last.refused
        self.attempts = attempts


@dataclass(frozen=True)
class Downloaded:
    size_bytes: int
    attempts: int


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class RecordingDownloader:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        account_sid: str,
        auth_token: str,
        max_bytes: int,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self._session = session
        self._authorization = basic_auth(account_sid, auth_token)
        self._max_bytes = max_bytes
        self._chunk_bytes = chunk_bytes

    async def fetch(self, recording_url: str, into: BinaryIO) -> int:
        """One attempt: write the WAV at `recording_url` into `into` (emptied first); return
        its size. Raises DownloadFailed."""
        into.seek(0)
        into.truncate()
        try:
            # aiohttp drops the Authorization header if a redirect leaves the carrier's origin
            async with self._session.get(
                recording_url + ".wav", headers={"Authorization": self._authorization}
            ) as response:
                if response.status != 200:
                    raise DownloadFailed(
                        f"carrier answered HTTP {response.status}",
                        transient=response.status >= 500 or response.status in _TRANSIENT_STATUSES,
                    )
                if (response.content_length or 0) > self._max_bytes:
                    raise self._too_large(response.content_length or 0)
                return await self._copy(response.content, into)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # refused, reset, broken off mid-body, timed out: the next attempt may get through
            raise DownloadFailed(f"download broke off: {exc!r}", transient=True) from exc

    async def _copy(self, content: aiohttp.StreamReader, into: BinaryIO) -> int:
        size, header = 0, b""
        async for chunk in content.iter_chunked(self._chunk_bytes):
            size += len(chunk)
            if size > self._max_bytes:  # whatever Content-Length claimed
                raise self._too_large(size)
            if len(header) < WAV_HEADER_BYTES:
                header += chunk[: WAV_HEADER_BYTES - len(header)]
                if len(header) == WAV_HEADER_BYTES and not is_wav(header):
                    raise DownloadFailed("not a WAV file", refused=True)
            await asyncio.to_thread(into.write, chunk)
        if not is_wav(header):
            raise DownloadFailed("not a WAV file", refused=True)
        await asyncio.to_thread(into.flush)
        return size

    def _too_large(self, size: int) -> DownloadFailed:
        return DownloadFailed(
            f"recording is larger than the limit of {self._max_bytes} bytes ({size}+)",
            refused=True,
        )

    async def fetch_with_retries(
        self,
        recording_url: str,
        into: BinaryIO,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> Downloaded:
        """Attempt the download up to `policy.max_attempts` times, waiting between transient
        failures; raises GaveUp with the last failure's reason."""
        attempt = 0
        while True:
            attempt += 1
            try:
                size = await self.fetch(recording_url, into)
            except DownloadFailed as exc:
                if not exc.transient or not policy.should_retry(attempt):
                    raise GaveUp(exc, attempt) from exc
                delay = policy.delay(attempt)
                RECORDING_DOWNLOADS.labels("retried").inc()
                log.warning(
                    "recording_download_retrying",
                    url=recording_url,
                    attempt=attempt,
                    reason=exc.reason,
                    delay_seconds=round(delay, 3),
                )
                await sleep(delay)
                continue
            return Downloaded(size_bytes=size, attempts=attempt)
