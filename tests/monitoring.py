"""The monitoring artifacts in deploy/monitoring, read once for the tests that check them: the
alert rules, their promtool tests, the dashboard, and where promtool is."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.promql import Reads, reads

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "deploy" / "monitoring"
RULES_FILE = MONITORING / "alerts.rules.yaml"
RULE_TESTS_FILE = MONITORING / "alerts.test.yaml"
DASHBOARD_FILE = MONITORING / "calls-dashboard.json"
PROMETHEUS_RULE_FILE = MONITORING / "prometheusrule.yaml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"

# Labels Prometheus attaches to every scraped series (from the target), not the services
TARGET_LABELS = frozenset(
    {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}
)
# Series Prometheus makes itself
PROMETHEUS_SERIES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return groups


def rules() -> Iterator[dict[str, Any]]:
    for group in rule_groups():
        yield from group["rules"]


def alerts() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def recorded_names() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return loaded


def dashboard_targets() -> Iterator[tuple[str, str]]:
    """(panel title, expression) of every query of every panel."""
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def expressions() -> Iterator[tuple[str, Reads]]:
    """Where each expression is (alert, recording rule or panel) and what it reads."""
    for rule in rules():
        yield f"rule {rule.get('alert') or rule.get('record')}", reads(str(rule["expr"]))
    for title, expr in dashboard_targets():
        yield f"panel {title!r}", reads(expr)


def promtool() -> str | None:
    """promtool from $PROMTOOL, PATH, or where scripts/ensure-promtool.sh unpacks it."""
    for candidate in (os.environ.get("PROMTOOL"), shutil.which("promtool")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    local = ROOT / ".tools" / "bin" / "promtool"
    return str(local) if os.access(local, os.X_OK) else None
