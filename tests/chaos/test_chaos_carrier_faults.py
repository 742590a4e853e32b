"""Scenario 6: the carrier misbehaves: 429s, 500s (with and without the call created),
requests that time out after the call was created, and every status callback sent twice and
out of order. Each call is still dialed at most once and ends in one true state."""

from __future__ import annotations

import aiohttp
import pytest

from tests.chaos.harness import (
    BATCH_SIZE,
    MakeSystem,
    Workload,
    numbers,
    set_faults,
    verify,
    wait_for_dials,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

# the carrier's scripted numbers (tools/carrier-simulator): busy, no answer, failed, machine
SCRIPTED = ["+15005550003", "+15005550004", "+15005550006", "+15005550005"]
INVALID = "+15005550001"  # refused at create (21211): fails before dialing


async def test_carrier_errors_timeouts_and_unruly_callbacks(make_system: MakeSystem) -> None:
    chaos = await make_system("carrier-faults")
    workload = Workload(org="org_chaos_carrier")
    throttled, lost, ambiguous, stalled = 6, 3, 3, 3
    async with aiohttp.ClientSession() as http:
        await set_faults(
            http,
            chaos,
            {
                "duplicate_callbacks": True,
                "reorder_callbacks": True,
                "create_responses": [
                    *[{"status": 429}] * throttled,  # refused: put back and retried
                    *[{"status": 500}] * lost,  # refused, call not created: ambiguous
                    *[{"status": 500, "call_created": True}] * ambiguous,  # created, then 500
                    *[{"timeout_seconds": 4}] * stalled,  # created; answer after the timeout
                ],
            },
        )
        await workload.batch(http, chaos, [*SCRIPTED, INVALID, *numbers(BATCH_SIZE - 5)])
        await workload.single(http, chaos)
        await wait_for_dials(http, chaos, BATCH_SIZE // 2)
        await workload.single(http, chaos)
        report = await verify(http, chaos, workload)

    by_number = {view["to_number"]: view for view in report.calls.values()}
    invalid = by_number[INVALID]
    assert (invalid["status"], invalid["outcome"]) == ("failed", "invalid_number")
    assert invalid["call_sid"].startswith("queued-")  # never dialed: the placeholder
    assert by_number["+15005550003"]["outcome"] == "busy"
    assert by_number["+15005550004"]["outcome"] == "no_answer"
    assert by_number["+15005550006"]["outcome"] == "failed"
    assert by_number["+15005550005"]["outcome"] == "voicemail"
    faulted = throttled + lost + ambiguous + stalled
    # every scripted fault was served, and those calls were still placed once each
    assert report.create_requests >= len(report.dials) + throttled + lost + 1
    sources = report.initiated_sources()
    # created-then-500 and timed-out creates: the SID came from a callback or the carrier list
    assert sources["callback"] + sources["reconciliation"] >= ambiguous + stalled, sources
    completed = sum(1 for v in report.calls.values() if v["status"] == "completed")
    print(
        f"\ncarrier-faults: {faulted} faulted create requests, {report.create_requests} create"
        f" requests for {len(report.dials)} dials, SIDs learned by {dict(sources)},"
        f" {completed} completed of {workload.expected_calls}, settled"
        f" {report.settle_seconds:.1f}s"
    )
