"""Every metric and label the alert rules and the dashboard read exists in the running system:
the services started as processes with the carrier simulator, a recorded call and a batch
driven through them, every service's /metrics scraped (repeatedly, while the batch is being
dialed, so that the per-organization backlog series are seen), and each expression's metric
names, matched and grouped label names, and `role`/`queue`/`type`/`route` values checked
against what was scraped.

Target labels (job, instance, …) and Prometheus' own series (up, ALERTS) come from Prometheus,
not the services, and are not looked for. A labelled metric that has no series yet (no leader
crashed, nothing rate-limited) shows only its HELP/TYPE lines: its name is checked in the
scrape and its label names against its definition in the service's code. Metrics of services
not in this tree yet (PENDING) are skipped until some source file defines them; from then on
they must be scraped like the others.
"""

from __future__ import annotations

import asyncio
import importlib
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.monitoring import (
    PROMETHEUS_SERIES,
    ROOT,
    TARGET_LABELS,
    expressions,
    recorded_names,
)
from tests.promql import Reads, reads
from tests.test_e2e_batches import numbers, post_batch
from tests.test_e2e_metrics import one_recorded_call

pytestmark = pytest.mark.integration

# Metrics of services being built elsewhere: rule and panel ready, series not yet exported.
# (none now: the webhooks service, #18, and the event store's reader metrics, #15, are merged)
PENDING: dict[str, str] = {}
# Labels whose values are names the code chooses (a typo in a rule would match nothing).
VALUES_CHECKED = frozenset({"role", "queue", "type", "route"})
# Where the labelled metrics are defined, for the label names of those with no series yet.
DEFINING_MODULES = (
    "calls_platform.metrics",
    "calls_platform.leader",
    "gateway.ratelimit",
    "dialer.scheduler",
    "dialer.watchdog",
    "dialer.canceler",
    "dialer.backlog",
    "dialer.outcomes",
    "call_log.projector",
    "recordings.download",
    "webhooks.sender",
)
SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created")


@dataclass
class Seen:
    """The union of what several scrapes of every service showed."""

    families: set[str] = field(default_factory=set)
    labels: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    values: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, text: str) -> None:
        for family in text_string_to_metric_families(text):
            self.families.update(family.name + suffix for suffix in SUFFIXES)
            for sample in family.samples:
                self.labels[sample.name].update(sample.labels)
                for label, value in sample.labels.items():
                    self.values[(sample.name, label)].add(value)

    def has(self, metric: str) -> bool:
        return metric in self.families or metric in self.labels


async def scrape_all(http: aiohttp.ClientSession, system: Any, seen: Seen) -> None:
    for service in system.services.values():
        if service.name.endswith("simulator"):
            continue
        async with http.get(f"{service.url}/metrics") as r:
            assert r.status == 200, service.name
            seen.add(await r.text())


def declared_labels(metric: str) -> set[str] | None:
    """The label names a metric is defined with in the services' code (imported here)."""
    for module in DEFINING_MODULES:
        importlib.import_module(module)
    base = metric.removesuffix("_total")
    # prometheus_client has no public accessor for the label names of an unused labelled metric
    collectors = REGISTRY._names_to_collectors
    collector = collectors.get(metric) or collectors.get(base)
    names = getattr(collector, "_labelnames", None)
    return set(names) if names is not None else None


def defined_in_source(metric: str) -> bool:
    return any(
        metric in path.read_text(errors="ignore")
        for top in ("libs", "services")
        for path in (ROOT / top).rglob("*.py")
    )


async def drive_and_scrape(http: aiohttp.ClientSession, system: Any) -> Seen:
    seen = Seen()
    await one_recorded_call(http, system)
    org = f"org_monitoring_{uuid.uuid4().hex[:8]}"
    await post_batch(http, system, org, numbers(80))  # four seconds of dialing at 20 CPS
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await scrape_all(http, system, seen)
        if org in seen.values[("dials_pending", "organization_id")]:
            break
        await asyncio.sleep(0.3)
    await scrape_all(http, system, seen)
    return seen


@dataclass
class Check:
    problems: list[str] = field(default_factory=list)
    pending: set[str] = field(default_factory=set)
    by_declaration: set[str] = field(default_factory=set)


def check(found: list[tuple[str, Reads]], seen: Seen, recorded: set[str]) -> Check:
    """What of `found` (where, what an expression reads) the scrapes in `seen` do not show."""
    result = Check()

    def labels_of(metric: str) -> set[str] | None:
        if metric in seen.labels:  # at least one series scraped
            return seen.labels[metric]
        result.by_declaration.add(metric)
        return declared_labels(metric)

    for where, read in found:
        names = set()
        for selector in read.selectors:
            metric = selector.metric
            if metric is None or metric in recorded or metric in PROMETHEUS_SERIES:
                continue
            if metric in PENDING and not defined_in_source(metric):
                result.pending.add(metric)
                continue
            if not seen.has(metric):
                result.problems.append(f"{where}: no metric {metric} in any service's /metrics")
                continue
            labels = labels_of(metric)
            if labels is None:
                result.problems.append(f"{where}: {metric} has no series and no known definition")
                continue
            names |= labels
            for label in sorted(selector.labels - TARGET_LABELS - labels):
                result.problems.append(f"{where}: {metric} has no label {label!r}")
            for label, value in selector.equals.items():
                sampled = metric in seen.labels
                if (
                    label in VALUES_CHECKED
                    and sampled
                    and value not in seen.values[(metric, label)]
                ):
                    result.problems.append(f"{where}: no {metric}{{{label}={value!r}}}")
        for label in sorted(read.grouping - TARGET_LABELS - {"le"}):
            if names and label not in names:
                result.problems.append(
                    f"{where}: groups or joins by {label!r}, which none of its metrics has"
                )
    return result


async def test_every_metric_and_label_of_the_alerts_and_the_dashboard_is_exported(
    system: Any, http: aiohttp.ClientSession
) -> None:
    seen = await drive_and_scrape(http, system)
    result = check(list(expressions()), seen, recorded_names())
    print(f"pending (not defined in this tree yet): {sorted(result.pending)}")
    print(f"label names from the definition (no series yet): {sorted(result.by_declaration)}")
    assert not result.problems, "\n".join(result.problems)
    # the per-organization backlog series were really seen, not only declared
    assert {"organization_id"} <= seen.labels["dials_pending"]
    assert "calls_ended_total" in seen.labels


async def test_the_check_finds_a_misspelt_metric_label_or_role(
    system: Any, http: aiohttp.ClientSession
) -> None:
    """The check above can fail: against the same running system, wrong names are reported."""
    seen = Seen()
    await scrape_all(http, system, seen)
    wrong = [
        ("a", reads("sum(rate(dial_attempt_total[5m]))")),
        ("b", reads('max by (queue) (queue_messages_ready{queue_name="calls.dead-letter"})')),
        ("c", reads('max(leadership_held{role="dialer-leader"})')),
        ("d", reads("max by (organisation_id) (dials_pending)")),
    ]
    problems = check(wrong, seen, set()).problems
    assert problems == [
        "a: no metric dial_attempt_total in any service's /metrics",
        "b: queue_messages_ready has no label 'queue_name'",
        "c: no leadership_held{role='dialer-leader'}",
        "d: groups or joins by 'organisation_id', which none of its metrics has",
    ]
