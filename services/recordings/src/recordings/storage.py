"""Where call audio is kept: the storage port, and its local-directory adapter.

The port is small on purpose: put a verified file under a key, open a key (optionally a byte
range of it) as a stream of chunks, delete a key. Keys are built by the service from ids it
has validated (`domain.storage_key`), never from request data; adapters check them again.
The S3-compatible adapter is in `recordings.s3`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import BinaryIO, Final, NamedTuple, Protocol

from .domain import ByteRange

CHUNK_BYTES: Final = 64 * 1024
_SEGMENT: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


class NotStored(LookupError):
    """Nothing is stored under the key."""


class StorageError(Exception):
    """The storage broke its promise (e.g. a stored object is shorter than it was)."""


class ChunkStream(AsyncIterator[bytes]):
    """The bytes of an opened object, chunk by chunk. Always `aclose()` it (iterating to the
    end does too): it holds a file or a connection until then."""

    def __init__(
        self,
        read: Callable[[int], Awaitable[bytes]],
        length: int,
        release: Callable[[], Awaitable[None]],
        *,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self._read = read
        self._remaining = length
        self._release = release
        self._chunk_bytes = chunk_bytes
        self._closed = False

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> bytes:
        if self._remaining <= 0 or self._closed:
            await self.aclose()
            raise StopAsyncIteration
        data = await self._read(min(self._chunk_bytes, self._remaining))
        if not data:
            await self.aclose()
            raise StorageError(f"stored object ended {self._remaining} bytes early")
        self._remaining -= len(data)
        return data

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._release()


class Opened(NamedTuple):
    """An opened object: its whole size, and the requested bytes of it."""

    size: int
    chunks: ChunkStream


class Storage(Protocol):
    async def put(self, key: str, source: BinaryIO) -> int:
        """Store everything `source` holds (from its start) under `key`, replacing what was
        there; return the number of bytes stored. Never leaves a partial object behind."""
        ...

    async def open(self, key: str, byte_range: ByteRange | None = None) -> Opened:
        """The object under `key` (only `byte_range` of it if given); NotStored if none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object under `key`; nothing stored there is not an error."""
        ...


def check_key(key: str) -> list[str]:
    """The key's path segments, if it is a plain relative path of safe names."""
    segments = key.split("/")
    if not all(_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments):
        raise ValueError(f"unsafe storage key: {key!r}")
    return segments


class LocalStorage:
    """Recordings as files under one root directory (the default for `make up`).

    A file is written next to its final name and renamed into place once complete and synced,
    so a reader never sees half a recording. Blocking file calls run in threads.
    """

    def __init__(self, root: Path | str, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._root = Path(root).resolve()
        self._chunk_bytes = chunk_bytes

    @property
    def root(self) -> Path:
        return self._root

    def path_of(self, key: str) -> Path:
        path = self._root.joinpath(*check_key(key)).resolve()
        # resolve() follows symlinks: a link planted under the root cannot lead outside it
        if not path.is_relative_to(self._root) or path == self._root:
            raise ValueError(f"storage key leaves the storage root: {key!r}")
        return path

    async def put(self, key: str, source: BinaryIO) -> int:
        path = self.path_of(key)
        return await asyncio.to_thread(self._put, path, source)

    def _put(self, path: Path, source: BinaryIO) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        try:
            with partial.open("wb") as out:
                source.seek(0)
                shutil.copyfileobj(source, out, self._chunk_bytes)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        _fsync_directory(path.parent)
        return path.stat().st_size

    async def open(self, key: str, byte_range: ByteRange | None = None) -> Opened:
        path = self.path_of(key)
        # Opening, seeking and closing are single quick system calls, done here rather than in
        # a thread: a task cancelled while a thread opens or closes the file would leak it.
        try:
            file = path.open("rb")
        except FileNotFoundError:
            raise NotStored(key) from None
        try:
            size = os.fstat(file.fileno()).st_size
            start, length = (byte_range.start, byte_range.length) if byte_range else (0, size)
            file.seek(start)
        except BaseException:
            file.close()
            raise

        async def read(n: int) -> bytes:
            return await asyncio.to_thread(file.read, n)

        async def release() -> None:
            file.close()

        stream = ChunkStream(read, length, release, chunk_bytes=self._chunk_bytes)
        return Opened(size, stream)

    async def delete(self, key: str) -> None:
        path = self.path_of(key)
        await asyncio.to_thread(path.unlink, missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (a crash right after must not lose the file)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
