"""After one call end to end (dialed, answered, recorded, recording stored, projected), every
service's /metrics shows the series operators watch (docs/operations.md, Metrics)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from calls_testing import new_org_id, unique_number
from calls_testing.metrics import Samples, scrape, series, value
from calls_testing.system import System

from tests.conftest import RECORDING_SECONDS

pytestmark = pytest.mark.integration


def http_latency_routes(samples: Samples) -> set[tuple[str, str]]:
    """(route, status) pairs of the HTTP latency histogram."""
    return {
        (s.labels["route"], s.labels["status"])
        for s in series(samples, "http_request_duration_seconds_bucket")
        if "le" in s.labels
    }


async def one_recorded_call(http: aiohttp.ClientSession, system: System) -> tuple[str, str]:
    org = new_org_id("org_metrics")
    async with http.post(
        f"{system.gateway}/calls",
        json={
            "to_number": unique_number(),
            "from_number": unique_number(),
            "record": True,
        },
        headers=system.auth(org),
    ) as r:
        assert r.status == 202, await r.text()
        call_id: str = (await r.json())["call_id"]
    deadline = time.monotonic() + RECORDING_SECONDS
    while True:
        async with http.get(f"{system.gateway}/calls/{call_id}", headers=system.auth(org)) as r:
            call = await r.json()
        if call.get("status") == "completed" and call.get("recording_url"):
            return org, call_id
        assert time.monotonic() < deadline, f"call did not finish with a recording: {call}"
        await asyncio.sleep(0.2)


async def test_every_service_shows_its_named_series_after_one_call(
    system: System, http: aiohttp.ClientSession
) -> None:
    await one_recorded_call(http, system)
    urls = {name: service.url for name, service in system.services.items()}
    gateway, dialer, call_log, recordings = [
        await scrape(http, urls[name]) for name in ("gateway", "dialer", "call-log", "recordings")
    ]

    # HTTP latency histograms by route and status, in every service
    assert ("/calls", "202") in http_latency_routes(gateway)
    assert ("/calls/{call_id}", "200") in http_latency_routes(gateway)
    assert any(route.startswith("/internal/") for route, _ in http_latency_routes(call_log))
    for samples in (dialer, recordings):
        assert ("/readyz", "200") in http_latency_routes(samples)

    # events appended (by every service that appends) and published; the outbox backlog
    assert value(gateway, "events_appended_total", type="CallRequested") >= 1
    assert value(dialer, "events_appended_total", type="CallInitiated") >= 1
    assert value(recordings, "events_appended_total", type="RecordingStored") >= 1
    for samples in (gateway, dialer, recordings):  # each runs a candidate relay
        assert value(samples, "events_published_total") >= 0
        assert value(samples, "outbox_backlog_events") >= 0
    published = sum(value(s, "events_published_total") for s in (gateway, dialer, recordings))
    assert published >= 4  # at least the call's CallRequested … RecordingStored

    # queue consumer lag, for the queues the call went through
    assert value(dialer, "queue_consumer_lag_seconds", queue="dialer.requests") >= 0
    assert value(recordings, "queue_consumer_lag_seconds", queue="recordings.requests") >= 0
    assert value(dialer, "queue_messages_consumed_total", queue="dialer.requests") >= 1

    # dial attempts by result, current dial rate
    assert value(dialer, "dial_attempts_total", result="placed") >= 1
    assert value(dialer, "dial_rate_per_second") >= 0
    assert value(dialer, "dial_rate_limit_per_second") > 0

    # projection lag, in seconds and positions
    assert value(call_log, "projection_position") >= 5
    assert value(call_log, "projection_lag_seconds") >= 0
    assert value(call_log, "projection_lag_events") >= 0

    # recording downloads by result
    assert value(recordings, "recording_downloads_total", result="stored") >= 1
