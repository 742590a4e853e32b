"""The storage port's contract, run against both adapters: a local directory, and S3-compatible
object storage (moto's S3 server, in-process on a loopback port), plus what only the local
adapter must guarantee (no path outside its root, no half-written file)."""

from __future__ import annotations

import io
import os
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from recordings.domain import ByteRange, storage_key
from recordings.s3 import S3Settings, S3Storage
from recordings.storage import LocalStorage, NotStored, Storage, StorageError

BODY = bytes(range(256)) * 1000  # 256,000 bytes: several chunks
CHUNK = 64 * 1024


def new_key() -> str:
    return storage_key("org_storage", uuid.uuid4(), "RE" + uuid.uuid4().hex)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server_module = pytest.importorskip("moto.server", reason="moto[server] is a dev dependency")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # werkzeug/flask internals
        server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def s3_storage(s3_endpoint: str) -> AsyncIterator[S3Storage]:
    settings = S3Settings(
        bucket="calls-recordings",
        endpoint_url=s3_endpoint,
        region="us-east-1",
        access_key="testing",
        secret_key="testing",
    )
    async with S3Storage.connect(settings) as storage:
        await storage._client.create_bucket(Bucket=settings.bucket)
        yield storage


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    # not async: an async fixture cannot set up another async fixture by name
    if request.param == "local":
        return LocalStorage(tmp_path / "recordings")
    s3: S3Storage = request.getfixturevalue("s3_storage")
    return s3


async def read_all(storage: Storage, key: str, byte_range: ByteRange | None = None) -> bytes:
    size, chunks = await storage.open(key, byte_range)
    assert size == len(BODY)
    try:
        return b"".join([chunk async for chunk in chunks])
    finally:
        await chunks.aclose()


# --- the contract -------------------------------------------------------------------------------


async def test_put_stores_everything_and_answers_the_size(storage: Storage) -> None:
    key = new_key()
    source = io.BytesIO(BODY)
    source.seek(1000)  # put stores the whole source, wherever it was left

    assert await storage.put(key, source) == len(BODY)
    assert await read_all(storage, key) == BODY


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 0), (0, 99), (100, 70_000), (len(BODY) - 1, len(BODY) - 1), (0, len(BODY) - 1)],
)
async def test_open_streams_exactly_the_byte_range(storage: Storage, start: int, end: int) -> None:
    key = new_key()
    await storage.put(key, io.BytesIO(BODY))

    assert await read_all(storage, key, ByteRange(start, end, len(BODY))) == BODY[start : end + 1]


async def test_open_streams_in_bounded_chunks(storage: Storage) -> None:
    key = new_key()
    await storage.put(key, io.BytesIO(BODY))
    _, chunks = await storage.open(key)
    try:
        sizes = [len(chunk) async for chunk in chunks]
    finally:
        await chunks.aclose()
    assert sum(sizes) == len(BODY)
    assert max(sizes) <= CHUNK
    assert len(sizes) >= len(BODY) // CHUNK


async def test_an_opened_object_may_be_closed_unread(storage: Storage) -> None:
    key = new_key()
    await storage.put(key, io.BytesIO(BODY))
    _, chunks = await storage.open(key)
    await chunks.aclose()
    await chunks.aclose()  # twice is harmless
    assert [chunk async for chunk in chunks] == []


async def test_put_replaces_what_was_there(storage: Storage) -> None:
    key = new_key()
    await storage.put(key, io.BytesIO(b"x" * len(BODY)))
    await storage.put(key, io.BytesIO(BODY))
    assert await read_all(storage, key) == BODY


async def test_nothing_stored_is_not_stored(storage: Storage) -> None:
    with pytest.raises(NotStored):
        await storage.open(new_key())


async def test_delete_removes_and_is_idempotent(storage: Storage) -> None:
    key = new_key()
    await storage.put(key, io.BytesIO(BODY))

    await storage.delete(key)
    await storage.delete(key)

    with pytest.raises(NotStored):
        await storage.open(key)


@pytest.mark.parametrize("key", ["../escape.wav", "/etc/passwd", "a/../../b.wav", ""])
async def test_unsafe_keys_are_refused_by_every_operation(storage: Storage, key: str) -> None:
    with pytest.raises(ValueError, match="unsafe storage key"):
        await storage.put(key, io.BytesIO(BODY))
    with pytest.raises(ValueError, match="unsafe storage key"):
        await storage.open(key)
    with pytest.raises(ValueError, match="unsafe storage key"):
        await storage.delete(key)


# --- the local directory ------------------------------------------------------------------------


async def test_local_files_live_under_the_root_at_their_key(tmp_path: Path) -> None:
    local = LocalStorage(tmp_path / "recordings")
    key = new_key()
    await local.put(key, io.BytesIO(BODY))
    assert (tmp_path / "recordings" / key).read_bytes() == BODY
    assert [p.name for p in (tmp_path / "recordings" / key).parent.iterdir()] == [
        key.rsplit("/", 1)[1]
    ]


async def test_a_symlink_cannot_lead_a_key_out_of_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "recordings"
    root.mkdir()
    os.symlink(outside, root / "0123456789abcdef")
    local = LocalStorage(root)
    key = "0123456789abcdef/" + new_key().split("/", 1)[1]

    with pytest.raises(ValueError, match="leaves the storage root"):
        await local.put(key, io.BytesIO(BODY))
    assert list(outside.iterdir()) == []


class BrokenSource(io.BytesIO):
    def read(self, size: int | None = -1, /) -> bytes:
        if self.tell() > 10_000:
            raise OSError("disk went away")
        return super().read(5_000)


async def test_a_failed_put_leaves_no_file_behind(tmp_path: Path) -> None:
    local = LocalStorage(tmp_path / "recordings")
    key = new_key()

    with pytest.raises(OSError, match="disk went away"):
        await local.put(key, BrokenSource(BODY))

    with pytest.raises(NotStored):
        await local.open(key)
    assert [p for p in (tmp_path / "recordings").rglob("*") if p.is_file()] == []


async def test_a_file_shorter_than_its_range_is_an_error_not_a_short_answer(
    tmp_path: Path,
) -> None:
    local = LocalStorage(tmp_path / "recordings")
    key = new_key()
    await local.put(key, io.BytesIO(BODY))
    _, chunks = await local.open(key, ByteRange(0, len(BODY) - 1, len(BODY)))
    (tmp_path / "recordings" / key).write_bytes(BODY[:100])  # truncated behind our back

    async def drain() -> list[bytes]:
        return [chunk async for chunk in chunks]

    with pytest.raises(StorageError, match="ended 255900 bytes early"):
        await drain()
    await chunks.aclose()
