"""Integration: the handler of recording reports, against real PostgreSQL, the carrier simulator
(real WAVs behind Basic auth) and a carrier of our own that fails on demand; storage is a
local directory."""

from __future__ import annotations

import asyncio
import io
import socket
import uuid
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest
from calls_events import (
    CallCanceled,
    Envelope,
    RecordingFailed,
    RecordingReported,
    RecordingStored,
    call_stream,
)
from calls_platform import eventstore
from calls_platform.db import Pool
from calls_testing import new_org_id
from calls_testing.events import event_of
from prometheus_client import REGISTRY
from recordings.consumer import RecordingCapture, UnexpectedEvent
from recordings.domain import RetryPolicy, storage_key
from recordings.download import RecordingDownloader
from recordings.storage import LocalStorage

if TYPE_CHECKING:  # the fixtures' types, from this folder's conftest
    from conftest import FlakyCarrier, Reports, Sim

pytestmark = pytest.mark.integration

MAX_ATTEMPTS = 3
MAX_BYTES = 64 * 1024


def downloads(result: str) -> float:
    return REGISTRY.get_sample_value("recording_downloads_total", {"result": result}) or 0.0


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_read=2)) as session:
        yield session


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "recordings")


@pytest.fixture
def capture(
    pool: Pool, storage: LocalStorage, http: aiohttp.ClientSession, sim: Sim, tmp_path: Path
) -> RecordingCapture:
    (tmp_path / "spool").mkdir()
    downloader = RecordingDownloader(
        http,
        account_sid=sim.config.account_sid,
        auth_token=sim.config.auth_token,
        max_bytes=MAX_BYTES,
    )
    policy = RetryPolicy(max_attempts=MAX_ATTEMPTS, base_seconds=0.01, max_seconds=0.05)
    return RecordingCapture(pool, storage, downloader, policy, spool_dir=str(tmp_path / "spool"))


def stored_files(storage: LocalStorage) -> list[Path]:
    return sorted(p for p in storage.root.rglob("*") if p.is_file())


def spooled(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "spool").iterdir())


async def test_a_completed_recording_is_downloaded_verified_and_stored(
    capture: RecordingCapture, reports: Reports, storage: LocalStorage, sim: Sim, tmp_path: Path
) -> None:
    callback = await sim.recorded_call(channels="dual")
    org = new_org_id()
    stored_before = downloads("stored")
    report = await reports.report(
        org,
        recording_url=callback["RecordingUrl"],
        recording_sid=callback["RecordingSid"],
        call_sid=callback["CallSid"],
        duration_seconds=int(callback["RecordingDuration"]),
    )
    call_id = event_of(report, RecordingReported).call_id

    await capture(report)

    key = storage_key(org, call_id, callback["RecordingSid"])
    [path] = stored_files(storage)
    assert path == storage.root / key
    with wave.open(io.BytesIO(path.read_bytes())) as audio:
        assert (audio.getnchannels(), audio.getframerate(), audio.getsampwidth()) == (2, 8000, 2)
    row = await reports.row(callback["RecordingSid"])
    assert (row["state"], row["attempts"], row["storage_key"]) == ("stored", 1, key)
    assert (row["size_bytes"], row["content_type"]) == (path.stat().st_size, "audio/wav")
    assert (row["organization_id"], row["call_id"]) == (org, call_id)
    [stored] = await reports.events(call_id)
    assert stored == RecordingStored(
        call_id=call_id,
        call_sid=callback["CallSid"],
        recording_sid=callback["RecordingSid"],
        storage_key=key,
        size_bytes=path.stat().st_size,
        content_type="audio/wav",
        duration_seconds=int(callback["RecordingDuration"]),
    )
    assert downloads("stored") == stored_before + 1
    assert spooled(tmp_path) == []  # the spool file is gone


async def test_the_stored_event_follows_the_report_in_its_call_stream(
    capture: RecordingCapture, reports: Reports, pool: Pool, flaky: FlakyCarrier
) -> None:
    report = await reports.report(new_org_id(), recording_url=flaky.plan(flaky.wav()))

    await capture(report)

    async with pool.connection() as conn:
        _, stored = await eventstore.read_stream(
            conn, call_stream(event_of(report, RecordingReported).call_id)
        )
    assert stored.event_type == "RecordingStored"
    assert (stored.correlation_id, stored.causation_id) == (
        report.correlation_id,
        str(report.event_id),
    )
    assert stored.organization_id == report.organization_id


async def test_the_download_uses_the_accounts_basic_auth(
    capture: RecordingCapture, reports: Reports, flaky: FlakyCarrier, sim: Sim
) -> None:
    await capture(await reports.report(new_org_id(), recording_url=flaky.plan(flaky.wav())))
    assert flaky.authorizations[-1] == sim.auth["Authorization"]


async def test_the_same_report_twice_stores_once(
    capture: RecordingCapture, reports: Reports, storage: LocalStorage, flaky: FlakyCarrier
) -> None:
    url = flaky.plan(flaky.wav())
    report = await reports.report(new_org_id(), recording_url=url)

    await capture(report)
    await capture(report)

    assert flaky.downloads(url) == 1
    assert len(stored_files(storage)) == 1
    call_id = event_of(report, RecordingReported).call_id
    assert [type(e) for e in await reports.events(call_id)] == [RecordingStored]


async def test_the_same_report_delivered_twice_at_once_is_downloaded_once(
    capture: RecordingCapture, reports: Reports, flaky: FlakyCarrier
) -> None:
    url = flaky.plan(flaky.slowly(0.3))
    report = await reports.report(new_org_id(), recording_url=url)

    await asyncio.gather(capture(report), capture(report))

    assert flaky.downloads(url) == 1
    call_id = event_of(report, RecordingReported).call_id
    assert [type(e) for e in await reports.events(call_id)] == [RecordingStored]


async def test_another_report_of_a_stored_recording_changes_nothing(
    capture: RecordingCapture, reports: Reports, flaky: FlakyCarrier
) -> None:
    url = flaky.plan(flaky.wav())
    sid = url.rsplit("/", 1)[-1]
    first = await reports.report(new_org_id(), recording_url=url, recording_sid=sid)
    await capture(first)
    again = await reports.report(
        first.organization_id,
        recording_url=None,
        recording_sid=sid,
        status="absent",
        call_id=event_of(first, RecordingReported).call_id,
    )

    await capture(again)

    assert (await reports.row(sid))["state"] == "stored"
    assert flaky.downloads(url) == 1


async def test_an_absent_recording_is_recorded_absent_and_nothing_is_downloaded(
    capture: RecordingCapture, reports: Reports, storage: LocalStorage
) -> None:
    report = await reports.report(new_org_id(), recording_url=None, status="absent")

    await capture(report)

    event = event_of(report, RecordingReported)
    row = await reports.row(event.recording_sid)
    assert (row["state"], row["attempts"], row["storage_key"]) == ("absent", 0, None)
    assert await reports.events(event.call_id) == []
    assert stored_files(storage) == []


async def test_a_recording_the_carrier_failed_is_recorded_failed_without_a_download(
    capture: RecordingCapture, reports: Reports, flaky: FlakyCarrier
) -> None:
    url = flaky.plan(flaky.wav())
    report = await reports.report(new_org_id(), recording_url=url, status="failed")

    await capture(report)
    await capture(report)

    event = event_of(report, RecordingReported)
    assert (await reports.row(event.recording_sid))["state"] == "failed"
    assert flaky.downloads(url) == 0
    assert await reports.events(event.call_id) == [
        RecordingFailed(
            call_id=event.call_id,
            recording_sid=event.recording_sid,
            reason="the carrier could not record the call",
            attempts=0,
        )
    ]


@pytest.mark.parametrize(
    ("failures", "kind"),
    [(2, "503"), (1, "429"), (2, "cut short")],
)
async def test_transient_failures_are_retried_until_the_recording_is_stored(
    capture: RecordingCapture, reports: Reports, flaky: FlakyCarrier, failures: int, kind: str
) -> None:
    failing = flaky.cut_short() if kind == "cut short" else flaky.status(int(kind))
    retried_before = downloads("retried")
    url = flaky.plan(*[failing] * failures, flaky.wav())
    report = await reports.report(new_org_id(), recording_url=url)

    await capture(report)

    event = event_of(report, RecordingReported)
    row = await reports.row(event.recording_sid)
    assert (row["state"], row["attempts"]) == ("stored", failures + 1)
    assert row["size_bytes"] == len(flaky.wav_bytes())
    assert flaky.downloads(url) == failures + 1
    assert downloads("retried") == retried_before + failures
    assert [type(e) for e in await reports.events(event.call_id)] == [RecordingStored]


async def test_a_download_failing_every_time_ends_recording_failed_after_the_last_attempt(
    capture: RecordingCapture,
    reports: Reports,
    flaky: FlakyCarrier,
    storage: LocalStorage,
    tmp_path: Path,
) -> None:
    failed_before = downloads("failed")
    url = flaky.plan(flaky.status(503))
    report = await reports.report(new_org_id(), recording_url=url)

    await capture(report)
    await capture(report)  # redelivered: already settled, not tried again

    event = event_of(report, RecordingReported)
    assert flaky.downloads(url) == MAX_ATTEMPTS
    row = await reports.row(event.recording_sid)
    assert (row["state"], row["attempts"]) == ("failed", MAX_ATTEMPTS)
    assert row["failure_reason"] == "carrier answered HTTP 503"
    assert await reports.events(event.call_id) == [
        RecordingFailed(
            call_id=event.call_id,
            recording_sid=event.recording_sid,
            reason="carrier answered HTTP 503",
            attempts=MAX_ATTEMPTS,
        )
    ]
    assert downloads("failed") == failed_before + 1
    assert stored_files(storage) == []
    assert spooled(tmp_path) == []


async def test_a_recording_the_carrier_does_not_have_fails_at_once(
    capture: RecordingCapture, reports: Reports, flaky: FlakyCarrier
) -> None:
    url = flaky.plan(flaky.status(404))
    report = await reports.report(new_org_id(), recording_url=url)

    await capture(report)

    assert flaky.downloads(url) == 1
    row = await reports.row(event_of(report, RecordingReported).recording_sid)
    assert (row["state"], row["failure_reason"]) == ("failed", "carrier answered HTTP 404")


async def test_an_unreachable_carrier_is_tried_again_then_given_up_on(
    capture: RecordingCapture, reports: Reports
) -> None:
    with socket.socket() as refusing:  # bound, not listening: connections are refused
        refusing.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{refusing.getsockname()[1]}/Recordings/RE{'0' * 32}"
        report = await reports.report(new_org_id(), recording_url=url)
        await capture(report)
    row = await reports.row(event_of(report, RecordingReported).recording_sid)
    assert (row["state"], row["attempts"]) == ("failed", MAX_ATTEMPTS)
    assert row["failure_reason"].startswith("download broke off")


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>Service Unavailable</body></html>",
        b"RIFF\x00\x00\x00\x00AVI LIST" + b"\x00" * 100,
        b"RIFF",
        b"",
    ],
    ids=["html", "avi", "too short", "empty"],
)
async def test_a_body_that_is_not_a_wav_is_refused_and_not_stored(
    capture: RecordingCapture,
    reports: Reports,
    flaky: FlakyCarrier,
    storage: LocalStorage,
    body: bytes,
) -> None:
    refused_before = downloads("refused")
    url = flaky.plan(flaky.wav(body))
    report = await reports.report(new_org_id(), recording_url=url)

    await capture(report)

    event = event_of(report, RecordingReported)
    assert flaky.downloads(url) == 1  # never retried
    row = await reports.row(event.recording_sid)
    assert (row["state"], row["failure_reason"]) == ("failed", "not a WAV file")
    [failed] = await reports.events(event.call_id)
    assert isinstance(failed, RecordingFailed)
    assert downloads("refused") == refused_before + 1
    assert stored_files(storage) == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_recording_larger_than_the_limit_is_refused(
    capture: RecordingCapture,
    reports: Reports,
    flaky: FlakyCarrier,
    storage: LocalStorage,
    chunked: bool,
) -> None:
    big = flaky.wav_bytes(seconds=3.0)  # 8 kHz, 16-bit, 2 channels: 96 kB
    assert len(big) > MAX_BYTES
    url = flaky.plan(flaky.wav(big, chunked=chunked))
    report = await reports.report(new_org_id(), recording_url=url)

    await capture(report)

    row = await reports.row(event_of(report, RecordingReported).recording_sid)
    assert row["state"] == "failed"
    assert row["failure_reason"].startswith(f"recording is larger than the limit of {MAX_BYTES}")
    assert flaky.downloads(url) == 1
    assert stored_files(storage) == []


async def test_a_recording_within_the_limit_is_stored_even_without_content_length(
    capture: RecordingCapture, reports: Reports, flaky: FlakyCarrier
) -> None:
    body = flaky.wav_bytes(seconds=1.0)  # 32 kB
    assert len(body) <= MAX_BYTES
    url = flaky.plan(flaky.wav(body, chunked=True))
    report = await reports.report(new_org_id(), recording_url=url)

    await capture(report)

    row = await reports.row(event_of(report, RecordingReported).recording_sid)
    assert (row["state"], row["size_bytes"]) == ("stored", len(body))


async def test_a_completed_report_without_a_url_ends_failed(
    capture: RecordingCapture, reports: Reports
) -> None:
    report = await reports.report(new_org_id(), recording_url=None, status="completed")

    await capture(report)

    row = await reports.row(event_of(report, RecordingReported).recording_sid)
    assert (row["state"], row["failure_reason"]) == ("failed", "no recording URL")
    [failed] = await reports.events(event_of(report, RecordingReported).call_id)
    assert isinstance(failed, RecordingFailed)


async def test_a_message_that_is_not_a_recording_report_is_refused(
    capture: RecordingCapture,
) -> None:
    envelope = Envelope.wrap(
        CallCanceled(call_id=uuid.uuid4(), reason="x"), stream_id="call-x", organization_id="o"
    )
    with pytest.raises(UnexpectedEvent):
        await capture(envelope)
