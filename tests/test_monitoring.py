"""The alert rules and the dashboard (deploy/monitoring): promtool's unit tests of every rule
pass and cover every alert, firing and quiet; every alert is labelled, explained and has its
runbook; the PrometheusRule the prod overlay deploys is exactly the rules file; the prod
overlays render the rules and the dashboard for the operator and the Grafana sidecar.

Needs promtool (`make promtool`, run by `make test`, unpacks it from Debian's prometheus
package) and, for the rendering tests, kubectl.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring import (
    MONITORING,
    PROMETHEUS_RULE_FILE,
    ROOT,
    RULE_TESTS_FILE,
    RULES_FILE,
    RUNBOOKS,
    alerts,
    dashboard,
    dashboard_targets,
    promtool,
    rule_groups,
)

RUNBOOK_BASE = "https://github.com/example/calls/blob/main/docs/runbooks.md#"


@pytest.fixture(scope="module")
def promtool_path() -> str:
    path = promtool()
    if path is None:
        pytest.fail(
            "promtool is not installed: run `make promtool` (scripts/ensure-promtool.sh unpacks"
            " it from Debian's prometheus package into .tools/bin) or set PROMTOOL"
        )
    return path


def run_promtool(path: str, *args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [path, *args], capture_output=True, text=True, cwd=cwd, check=False, timeout=120
    )


# ---- promtool ----------------------------------------------------------------------------------


def test_the_rules_file_is_valid(promtool_path: str) -> None:
    result = run_promtool(promtool_path, "check", "rules", RULES_FILE.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_tests_pass(promtool_path: str) -> None:
    result = run_promtool(promtool_path, "test", "rules", RULE_TESTS_FILE.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_rule_changed_under_its_tests_fails_them(promtool_path: str, tmp_path: Path) -> None:
    """The rule tests check thresholds and annotations: they are not a formality."""
    shutil.copy(RULE_TESTS_FILE, tmp_path / RULE_TESTS_FILE.name)
    text = RULES_FILE.read_text()
    assert "(dials_pending_unserved_seconds) > 900" in text
    (tmp_path / RULES_FILE.name).write_text(
        text.replace(
            "(dials_pending_unserved_seconds) > 900", "(dials_pending_unserved_seconds) > 9000"
        )
    )
    result = run_promtool(promtool_path, "test", "rules", RULE_TESTS_FILE.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "CallsWaitingUnserved" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(RULE_TESTS_FILE.read_text())["tests"]
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in tests:
        for case in test.get("alert_rule_test", []):
            expected = case.get("exp_alerts") or []
            (fired if expected else quiet).add(case["alertname"])
            for alert in expected:  # labels and annotations are checked, not left open
                assert alert.get("exp_labels", {}).get("severity"), (test["name"], alert)
                assert set(alert.get("exp_annotations", {})) == {
                    "summary",
                    "description",
                    "runbook_url",
                }, (test["name"], alert)
    names = {a["alert"] for a in alerts()}
    assert names - fired == set(), "alerts never seen firing in alerts.test.yaml"
    assert names - quiet == set(), "alerts never seen staying quiet in alerts.test.yaml"
    assert fired | quiet <= names, "tests of alerts that do not exist"


# ---- what each alert says ----------------------------------------------------------------------


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown document."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_every_alert_has_a_severity_a_summary_and_its_runbook() -> None:
    anchors = github_anchors(RUNBOOKS.read_text())
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning"}, name
        annotations = alert["annotations"]
        assert annotations["summary"], name
        assert annotations["description"], name
        url = annotations["runbook_url"]
        assert url == RUNBOOK_BASE + name.lower(), name
        assert name.lower() in anchors, f"docs/runbooks.md has no section {name}"


def test_summaries_name_the_organization_queue_or_role_an_alert_is_about() -> None:
    """Every label an alert carries (as the rule tests show it firing) is in its summary."""
    summaries = {a["alert"]: a["annotations"]["summary"] for a in alerts()}
    tests = yaml.safe_load(RULE_TESTS_FILE.read_text())["tests"]
    for test in tests:
        for case in test.get("alert_rule_test", []):
            for alert in case.get("exp_alerts") or []:
                for label in set(alert["exp_labels"]) - {"severity"}:
                    assert f"$labels.{label}" in summaries[case["alertname"]], (
                        case["alertname"],
                        label,
                    )


def test_every_runbook_section_belongs_to_an_alert() -> None:
    sections = re.findall(r"^## (\w+)$", RUNBOOKS.read_text(), re.M)
    assert set(sections) == {a["alert"] for a in alerts()}


# ---- one source: the rules file; the PrometheusRule and the dashboard ConfigMap -----------------


def test_the_prometheus_rule_is_generated_from_the_rules_file() -> None:
    generated = yaml.safe_load(PROMETHEUS_RULE_FILE.read_text())
    assert generated["kind"] == "PrometheusRule"
    assert generated["spec"]["groups"] == rule_groups(), "run `make monitoring`"
    import runpy

    script = runpy.run_path(str(ROOT / "scripts" / "render_prometheusrule.py"))
    assert PROMETHEUS_RULE_FILE.read_text() == script["render"](), "run `make monitoring`"


def test_the_dashboard_is_well_formed() -> None:
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert board["uid"]
    assert board["title"]
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
    titles = {title for title, _ in dashboard_targets()}
    for wanted in (
        "Calls accepted",
        "Calls ended by outcome",
        "Pacing at the carrier",
        "Outbox backlog",
        "Projection lag",
        "Queue depths",
        "HTTP 5xx by service",
        "Gateway latency",
    ):
        assert wanted in titles
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


requires_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl is not installed (needed for kustomize)"
)


def render(overlay: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "deploy" / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@requires_kubectl
@pytest.mark.parametrize("overlay", ["prod", "prod-with-operators"])
def test_prod_renders_the_rules_and_the_dashboard(overlay: str) -> None:
    docs = render(overlay)
    [rule] = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["metadata"]["namespace"] == "calls"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"]["groups"] == rule_groups()
    [board] = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard")
    ]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["calls-dashboard.json"]) == dashboard()


@requires_kubectl
def test_dev_has_no_prometheus_operator_resources() -> None:
    kinds = {d["kind"] for d in render("dev")}
    assert "PrometheusRule" not in kinds
    assert "ServiceMonitor" not in kinds
