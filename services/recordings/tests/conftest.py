"""Fixtures for the recordings service's tests: a migrated database, the carrier simulator
in-process (it plays calls out and serves their recordings as real WAVs behind Basic auth), a
tiny carrier of our own that fails on demand, and helpers to report recordings the way the
gateway does (a RecordingReported in the event store)."""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from calls_events import Envelope, Event, RecordingReported, RecordingStatus
from calls_platform.db import Pool
from calls_platform.report_ids import recording_reported_id
from calls_testing import new_recording_sid
from calls_testing.events import append_as_gateway, read_call_events
from calls_testing.receiver import Receiver, webhook_receiver
from calls_testing.serving import base_url, pooled, served
from calls_testing.simulator import LocalSimulator, local_simulator
from carrier_sim import SimConfig
from carrier_sim.wav import sine_wav
from recordings.__main__ import migrate

Responder = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- database ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def recordings_db(database_factory: Callable[[str], str]) -> str:
    """A database with the event store's and the recordings service's migrations applied
    (tests isolate by organization, call and recording ids)."""
    url = database_factory("recordings")
    await migrate(url)
    return url


@pytest.fixture(scope="module")
async def pool(recordings_db: str) -> AsyncIterator[Pool]:
    async with pooled(recordings_db, name="recordings-test") as pool:
        yield pool


@dataclass
class Reports:
    """Reports recordings as the gateway does, and reads back what the service recorded."""

    pool: Pool

    async def report(
        self,
        org: str,
        *,
        recording_url: str | None,
        recording_sid: str | None = None,
        status: RecordingStatus = "completed",
        call_id: uuid.UUID | None = None,
        call_sid: str | None = None,
        duration_seconds: int | None = 1,
        channels: int | None = 2,
    ) -> Envelope:
        """Append a RecordingReported as the gateway does; return it as recorded."""
        event = RecordingReported(
            call_id=call_id or uuid.uuid4(),
            call_sid=call_sid or "CA" + uuid.uuid4().hex,
            recording_sid=recording_sid or new_recording_sid(),
            recording_url=recording_url,
            status=status,
            duration_seconds=duration_seconds,
            channels=channels,
            source="OutboundAPI",
        )
        event_id = recording_reported_id(event.call_id, event.recording_sid, status)
        return await append_as_gateway(self.pool, event, org, event_id=event_id)

    async def find_row(self, recording_sid: str) -> dict[str, Any] | None:
        """The service's row for the recording, if it has one yet."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT * FROM recordings.recordings WHERE recording_sid = %s", (recording_sid,)
            )
            return await cur.fetchone()

    async def row(self, recording_sid: str) -> dict[str, Any]:
        """The service's row for the recording, which must exist."""
        row = await self.find_row(recording_sid)
        assert row is not None, f"no row for {recording_sid}"
        return row

    async def events(self, call_id: uuid.UUID) -> list[Event]:
        """What the service appended to the call's stream (after the report)."""
        return await read_call_events(self.pool, call_id, after=RecordingReported)


@pytest.fixture(scope="module")
def reports(pool: Pool) -> Reports:
    return Reports(pool)


# --- the carrier simulator --------------------------------------------------------------------


class Sim(LocalSimulator):
    """The carrier simulator, with a receiver for the recording callbacks it sends."""

    receiver: Receiver

    async def recorded_call(self, *, channels: str = "dual") -> dict[str, str]:
        """Place an answered, recorded call; return its signed recording callback's form."""
        async with self.session.post(
            f"{self.account_uri}/Calls.json",
            data={
                "To": "+14155550123",
                "From": "+14155550100",
                "Twiml": "<Response/>",
                "Record": "true",
                "RecordingChannels": channels,
                "RecordingStatusCallback": f"{self.receiver.url}/recording",
            },
            headers=self.auth,
        ) as response:
            assert response.status == 201, await response.text()
            call_sid = (await response.json())["sid"]
        callback = await self.receiver.wait_call(call_sid, "/recording")
        return dict(callback.params)


@pytest.fixture(scope="module")
async def sim() -> AsyncIterator[Sim]:
    async with (
        webhook_receiver() as receiver,
        local_simulator(SimConfig(ring_seconds=0.05, talk_seconds=0.3)) as local,
    ):
        # the simulator closes first: play-outs stop before the receiver goes away
        sim = Sim(local.session, local.server, local.config)
        sim.receiver = receiver
        yield sim


# --- a carrier that fails on demand -----------------------------------------------------------


@dataclass
class FlakyCarrier:
    """Serves `/Recordings/<sid>.wav` as planned per SID: each request takes the next planned
    answer, and the last one repeats. Counts requests and keeps their Authorization headers."""

    url: str = ""
    plans: dict[str, list[Responder]] = field(default_factory=dict)
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    authorizations: list[str | None] = field(default_factory=list)

    # --- answers -----------------------------------------------------------------------------

    @staticmethod
    def wav_bytes(seconds: float = 0.25, channels: int = 2) -> bytes:
        return sine_wav(seconds, channels)

    @classmethod
    def wav(cls, body: bytes | None = None, *, chunked: bool = False) -> Responder:
        """Serve `body` (a short WAV by default), with Content-Length or chunked."""

        async def respond(request: web.Request) -> web.StreamResponse:
            return await _serve(request, cls.wav_bytes() if body is None else body, chunked)

        return respond

    @staticmethod
    def status(status: int) -> Responder:
        async def respond(request: web.Request) -> web.StreamResponse:
            return web.json_response({"code": 20500, "message": "unavailable"}, status=status)

        return respond

    @classmethod
    def slowly(cls, seconds: float) -> Responder:
        async def respond(request: web.Request) -> web.StreamResponse:
            await asyncio.sleep(seconds)
            return await _serve(request, cls.wav_bytes(), False)

        return respond

    @classmethod
    def cut_short(cls) -> Responder:
        """Promise a whole WAV, send half of it, and hang up."""

        async def respond(request: web.Request) -> web.StreamResponse:
            body = cls.wav_bytes()
            response = web.StreamResponse(headers={"Content-Type": "audio/x-wav"})
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
            assert request.transport is not None
            request.transport.close()
            return response

        return respond

    # --- plans ---------------------------------------------------------------------------

    def plan(self, *answers: Responder) -> str:
        """A new recording whose downloads get `answers`; returns its RecordingUrl."""
        sid = new_recording_sid()
        self.plans[sid] = list(answers)
        return self.recording_url(sid)

    def recording_url(self, sid: str) -> str:
        return f"{self.url}/Recordings/{sid}"

    def downloads(self, recording_url: str) -> int:
        return self.requests[recording_url.rsplit("/", 1)[-1]]


async def _serve(request: web.Request, body: bytes, chunked: bool) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "audio/x-wav"})
    if chunked:
        response.enable_chunked_encoding()
    else:
        response.content_length = len(body)
    await response.prepare(request)
    for start in range(0, len(body), 8192):
        await response.write(body[start : start + 8192])
    await response.write_eof()
    return response


@pytest.fixture(scope="module")
async def flaky() -> AsyncIterator[FlakyCarrier]:
    state = FlakyCarrier()

    async def recording(request: web.Request) -> web.StreamResponse:
        sid = request.match_info["sid"]
        state.requests[sid] += 1
        state.authorizations.append(request.headers.get("Authorization"))
        plan = state.plans.get(sid)
        if not plan:
            return web.json_response({"code": 20404}, status=404)
        answer = plan.pop(0) if len(plan) > 1 else plan[0]
        return await answer(request)

    app = web.Application()
    app.router.add_get("/Recordings/{sid}.wav", recording)
    async with served(app) as server:
        state.url = base_url(server)
        yield state
