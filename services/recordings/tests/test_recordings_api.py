"""Integration: the whole service as its composition root builds it (real PostgreSQL, RabbitMQ
and the carrier simulator): a RecordingReported in the event store is relayed to the service's
queue, downloaded, stored, and served by the internal API: whole, by byte range, never to
another organization; and deleted."""

from __future__ import annotations

import asyncio
import io
import uuid
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, LiteralString

import pytest
from aiohttp.test_utils import TestClient, TestServer
from calls_events import RecordingDeleted, RecordingReported, RecordingStored
from calls_testing import new_org_id
from calls_testing.events import event_of
from calls_testing.plugin import AmqpFactory
from calls_testing.transactions import holding_ids
from calls_testing.waiting import Wait
from recordings import catalog
from recordings.__main__ import create_app
from recordings.api import STORAGE
from recordings.config import Settings
from recordings.domain import RetryPolicy

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import FlakyCarrier, Reports, Sim

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Service:
    client: TestClient[Any, Any]
    settings: Settings
    root: Path


def recording_path(org: str, call_id: uuid.UUID | str) -> str:
    return f"/internal/orgs/{org}/calls/{call_id}/recording"


@dataclass(frozen=True)
class Stored:
    org: str
    call_id: uuid.UUID
    recording_sid: str
    audio: bytes  # what the carrier serves for it


@pytest.fixture(scope="module")
async def service(
    recordings_db: str,
    amqp_factory: AmqpFactory,
    sim: Sim,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Service]:
    root = tmp_path_factory.mktemp("recordings")
    settings = Settings(
        database_url=recordings_db,
        # a vhost of its own: other suites' relays must not feed this service's consumer
        amqp_url=amqp_factory("recordings"),
        host="127.0.0.1",
        port=0,
        twilio_account_sid=sim.config.account_sid,
        twilio_auth_token=sim.config.auth_token,
        recordings_dir=str(root),
        json_logs=False,
        log_level="WARNING",
        migrate_on_start=True,
        retry=RetryPolicy(max_attempts=2, base_seconds=0.01, max_seconds=0.02),
        concurrency=2,
    )
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(settings), host="127.0.0.1", port=0)
    )
    await client.start_server()
    try:
        yield Service(client, settings, root)
    finally:
        await client.close()


StoreRecording = Callable[[], Awaitable[Stored]]


@pytest.fixture(scope="module")
def store_recording(service: Service, reports: Reports, sim: Sim, wait: Wait) -> StoreRecording:
    """Report a real recording of a simulated call, and wait until the service serves it."""

    async def store() -> Stored:
        callback = await sim.recorded_call(channels="dual")
        org = new_org_id()
        report = await reports.report(
            org,
            recording_url=callback["RecordingUrl"],
            recording_sid=callback["RecordingSid"],
            call_sid=callback["CallSid"],
        )
        call_id = event_of(report, RecordingReported).call_id

        async def served() -> bool:
            response = await service.client.get(recording_path(org, call_id))
            await response.read()
            return response.status == 200

        await wait(served, what="the recording to be stored and served")
        async with sim.session.get(callback["RecordingUrl"] + ".wav", headers=sim.auth) as r:
            audio = await r.read()
        return Stored(org, call_id, callback["RecordingSid"], audio)

    return store


@pytest.fixture(scope="module")
async def stored(store_recording: StoreRecording) -> Stored:
    return await store_recording()


async def test_probes(service: Service) -> None:
    assert (await service.client.get("/healthz")).status == 200
    ready = await service.client.get("/readyz")
    assert await ready.json() == {
        "status": "ready",
        "checks": {"database": True, "broker": True, "relay_routing": True},
    }
    metrics = await service.client.get("/metrics")
    assert metrics.status == 200
    assert "recording_downloads_total" in await metrics.text()


async def test_a_stored_recording_is_served_whole_as_wav(
    service: Service, stored: Stored, reports: Reports
) -> None:
    response = await service.client.get(recording_path(stored.org, stored.call_id))

    assert response.status == 200
    assert response.content_type == "audio/wav"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert int(response.headers["Content-Length"]) == len(stored.audio)
    assert "Content-Range" not in response.headers
    assert response.headers["X-Correlation-ID"]
    body = await response.read()
    assert body == stored.audio
    with wave.open(io.BytesIO(body)) as audio:
        assert audio.getnchannels() == 2
    [event] = await reports.events(stored.call_id)
    assert isinstance(event, RecordingStored)
    assert (service.root / event.storage_key).read_bytes() == stored.audio


async def test_head_answers_the_headers_without_the_audio(service: Service, stored: Stored) -> None:
    path = recording_path(stored.org, stored.call_id)
    for _ in range(2):  # the connection stays usable
        response = await service.client.head(path)
        assert response.status == 200
        assert int(response.headers["Content-Length"]) == len(stored.audio)
        assert await response.read() == b""
    assert await (await service.client.get(path)).read() == stored.audio


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [("bytes=0-99", 0, 99), ("bytes=100-", 100, None), ("bytes=-44", -44, None)],
)
async def test_a_byte_range_is_served_as_206_partial_content(
    service: Service, stored: Stored, header: str, first: int, last: int | None
) -> None:
    size = len(stored.audio)
    start = first % size
    end = size - 1 if last is None else last

    response = await service.client.get(
        recording_path(stored.org, stored.call_id), headers={"Range": header}
    )

    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
    assert int(response.headers["Content-Length"]) == end - start + 1
    assert response.content_type == "audio/wav"
    assert await response.read() == stored.audio[start : end + 1]


async def test_a_range_past_the_end_is_416_with_the_size(service: Service, stored: Stored) -> None:
    size = len(stored.audio)
    response = await service.client.get(
        recording_path(stored.org, stored.call_id), headers={"Range": f"bytes={size}-"}
    )
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{size}"
    assert (await response.json())["error"]["code"] == "range_not_satisfiable"


async def test_an_unusable_range_is_ignored(service: Service, stored: Stored) -> None:
    response = await service.client.get(
        recording_path(stored.org, stored.call_id), headers={"Range": "bytes=0-1,4-5"}
    )
    assert response.status == 200
    assert await response.read() == stored.audio


async def test_another_organizations_recording_is_not_found(
    service: Service, stored: Stored
) -> None:
    for path in (
        recording_path("org_someone_else", stored.call_id),
        recording_path(stored.org, uuid.uuid4()),
        recording_path(stored.org, "not-a-uuid"),
    ):
        response = await service.client.get(path)
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "not_found"


async def test_an_absent_recording_is_not_found(
    service: Service, reports: Reports, wait: Wait
) -> None:
    org = new_org_id()
    report = await reports.report(org, recording_url=None, status="absent")
    sid = event_of(report, RecordingReported).recording_sid

    async def settled() -> bool:
        row = await reports.find_row(sid)
        return row is not None and row["state"] == "absent"

    await wait(settled, what="the absent report to be recorded")
    response = await service.client.get(
        recording_path(org, event_of(report, RecordingReported).call_id)
    )
    assert response.status == 404


async def test_delete_removes_the_recording_for_good(
    service: Service, store_recording: StoreRecording, reports: Reports
) -> None:
    mine = await store_recording()
    path = recording_path(mine.org, mine.call_id)
    assert (
        await service.client.delete(recording_path("org_someone_else", mine.call_id))
    ).status == 404
    [stored] = await reports.events(mine.call_id)
    assert isinstance(stored, RecordingStored)

    response = await service.client.delete(path, headers={"X-Requested-By": "user_1"})

    assert response.status == 204
    assert (await service.client.get(path)).status == 404
    assert (await service.client.delete(path)).status == 404
    assert not (service.root / stored.storage_key).exists()
    assert (await reports.row(mine.recording_sid))["state"] == "deleted"
    assert (await reports.events(mine.call_id))[1:] == [
        RecordingDeleted(
            call_id=mine.call_id, recording_sid=mine.recording_sid, requested_by="user_1"
        )
    ]


async def test_storage_refusing_a_delete_leaves_the_recording_served(
    service: Service, store_recording: StoreRecording, reports: Reports
) -> None:
    mine = await store_recording()
    path = recording_path(mine.org, mine.call_id)
    [stored] = await reports.events(mine.call_id)
    assert isinstance(stored, RecordingStored)
    audio_file = service.root / stored.storage_key
    kept = audio_file.with_name(audio_file.name + ".kept")
    audio_file.rename(kept)
    (audio_file / "in-the-way").mkdir(parents=True)  # a directory there: unlink fails
    try:
        response = await service.client.delete(path)
        assert response.status == 500
        assert (await response.json())["error"]["code"]
        assert (await reports.row(mine.recording_sid))["state"] == "stored"
        assert await reports.events(mine.call_id) == [stored]  # no RecordingDeleted
    finally:
        (audio_file / "in-the-way").rmdir()
        audio_file.rmdir()
        kept.rename(audio_file)
    response = await service.client.get(path)
    assert response.status == 200
    assert await response.read() == mine.audio
    assert (await service.client.delete(path)).status == 204


async def test_storage_removes_the_audio_while_no_transaction_holds_back_readers(
    service: Service,
    store_recording: StoreRecording,
    recordings_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An open transaction holding an id (any write) holds back every event-store reader in
    the cluster: storage, which may be slow (S3), works outside any."""
    mine = await store_recording()
    storage = service.client.app[STORAGE]
    remove = storage.delete
    held: list[int] = []

    async def delete_looking_at_transactions(key: str) -> None:
        # looked at for a while, as a slow storage would take: the service's own background
        # work (its intake checkpoint) may hold an id for a moment, a transaction around this
        # call would hold one all along
        for _ in range(10):
            held.append(await holding_ids(recordings_db))
            await asyncio.sleep(0.03)
        await remove(key)

    monkeypatch.setattr(storage, "delete", delete_looking_at_transactions)
    assert (await service.client.delete(recording_path(mine.org, mine.call_id))).status == 204
    assert min(held) == 0, held


async def test_a_deletion_cut_short_is_not_served_and_repeating_delete_finishes_it(
    service: Service, store_recording: StoreRecording, reports: Reports, pool: Any
) -> None:
    mine = await store_recording()
    path = recording_path(mine.org, mine.call_id)
    [stored] = await reports.events(mine.call_id)
    assert isinstance(stored, RecordingStored)
    async with pool.connection() as conn:  # as a DELETE that died after its first step leaves it
        await conn.execute(
            "UPDATE recordings.recordings SET state = 'deleting' WHERE recording_sid = %s",
            (mine.recording_sid,),
        )
    assert (await service.client.get(path)).status == 404
    assert (await service.client.delete(path)).status == 204
    assert not (service.root / stored.storage_key).exists()
    assert (await reports.row(mine.recording_sid))["state"] == "deleted"
    assert [type(e) for e in await reports.events(mine.call_id)] == [
        RecordingStored,
        RecordingDeleted,
    ]
    assert (await service.client.delete(path)).status == 404


async def test_migrations_can_run_again(service: Service, pool: Any) -> None:
    """The service migrated on start over an already migrated database."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT name FROM recordings.schema_migrations ORDER BY name")
        assert [row["name"] for row in await cur.fetchall()] == [
            "0001_recordings.sql",
            "0002_intake_checkpoint.sql",
            "0003_deleting.sql",
            "0004_deletable_index.sql",
        ]


@pytest.mark.parametrize("state_is", [catalog.SERVED, catalog.DELETABLE], ids=["get", "delete"])
async def test_a_call_s_recording_is_found_through_the_index_by_get_and_by_delete(
    pool: Any, state_is: LiteralString
) -> None:
    """The plan a prepared statement settles on (generic: parameters unknown) reads the
    partial index, for GET's lookup and DELETE's alike (DELETE's once read every recording of
    the organization); sequential scans off, so that a small table's cheaper scan does not
    hide an index the planner cannot use."""
    numbered = catalog.newest_query(state_is).replace("%s", "$1", 1).replace("%s", "$2", 1)
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE newest_recording (text, uuid) AS {numbered}")
        try:
            cur = await conn.execute(
                "EXPLAIN EXECUTE newest_recording('org', '00000000-0000-0000-0000-000000000000')"
            )
            plan = "\n".join(row["QUERY PLAN"] for row in await cur.fetchall())
        finally:
            await conn.execute("DEALLOCATE newest_recording")
    assert "recordings_call_live" in plan, plan


async def test_a_client_that_goes_away_mid_download_leaves_the_service_serving(
    service: Service, reports: Reports, flaky: FlakyCarrier, wait: Wait
) -> None:
    audio = flaky.wav_bytes(seconds=30)  # ~1 MB: many chunks
    org = new_org_id()
    report = await reports.report(org, recording_url=flaky.plan(flaky.wav(audio)))
    path = recording_path(org, event_of(report, RecordingReported).call_id)

    async def served() -> bool:
        response = await service.client.get(path, headers={"Range": "bytes=0-0"})
        await response.read()
        return response.status == 206

    await wait(served, what="the large recording to be stored")
    for _ in range(3):
        response = await service.client.get(path)
        assert response.status == 200
        assert len(await response.content.read(1024)) > 0
        response.close()  # hang up with most of it unsent
    response = await service.client.get(path)
    assert await response.read() == audio
