"""Scenario 5: two dialer replicas. Only the leader dials, so the global rate stays at
DIALER_CPS (measured where the carrier sees the calls); the leader is killed (-9) mid-batch
and the standby takes over within seconds, dialing nothing twice."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.chaos.harness import (
    BATCH_SIZE,
    CPS,
    ChaosSystem,
    MakeSystem,
    Workload,
    start_batch,
    until,
    verify,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


def dial_leader(chaos: ChaosSystem) -> str | None:
    """The replica whose log says it started the dial loop (and has not been killed)."""
    for name in ("dialer-a", "dialer-b"):
        process = chaos.service(name).process
        if process is None or process.poll() is not None:
            continue
        for line in chaos.log_lines(name):
            try:
                if json.loads(line).get("event") == "dial_loop_started":
                    return name
            except ValueError:
                continue
    return None


async def test_two_dialers_share_one_rate_and_the_standby_takes_over(
    make_system: MakeSystem,
) -> None:
    chaos = await make_system("dialer-replicas", dialers=2)
    workload = Workload(org="org_chaos_replicas")
    async with aiohttp.ClientSession() as http:
        await start_batch(http, chaos, workload)

        async def elected() -> bool:
            return dial_leader(chaos) is not None

        await until(elected, 5, "a dial leader")
        leader = dial_leader(chaos)
        assert leader is not None
        standby = "dialer-b" if leader == "dialer-a" else "dialer-a"
        killed_at = chaos.kill(leader)

        async def taken_over() -> bool:
            return dial_leader(chaos) == standby

        await until(taken_over, 15, "the standby to take over")
        await workload.single(http, chaos)
        report = await verify(http, chaos, workload)

    times = sorted(d["created_at"] for d in report.dials)
    before = [t for t in times if t < killed_at]
    after = [t for t in times if t >= killed_at]
    assert len(before) < BATCH_SIZE
    assert after, "nothing dialed after the leader was killed"
    # never faster than CPS, whoever dials: any CPS consecutive gaps span at least ~1 s
    spans = [times[i + CPS] - times[i] for i in range(len(times) - CPS)]
    assert min(spans) >= 0.9, min(spans)
    takeover = after[0] - killed_at
    assert takeover < 5.0
    rate_before = (len(before) - 1) / (before[-1] - before[0])
    resumed = after[:50]  # the standby's pace (later ones are the killed leader's reconciled)
    rate_after = (len(resumed) - 1) / max(resumed[-1] - resumed[0], 1e-9)
    assert rate_before <= CPS * 1.1
    assert rate_after <= CPS * 1.1
    print(
        f"\ndialer-replicas: {len(before)} dials before the kill at {rate_before:.1f}/s,"
        f" after it at {rate_after:.1f}/s (DIALER_CPS {CPS}); shortest span of {CPS} gaps"
        f" {min(spans):.3f}s; first dial {takeover:.1f}s after the kill;"
        f" {workload.expected_calls} calls, {len(report.dials)} dials,"
        f" settled {report.settle_seconds:.1f}s"
    )
