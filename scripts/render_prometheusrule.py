"""Write deploy/monitoring/prometheusrule.yaml: the PrometheusRule `calls` holding exactly the
groups of deploy/monitoring/alerts.rules.yaml (the one source of the alert rules).

    uv run python scripts/render_prometheusrule.py      (make monitoring)

tests/test_monitoring.py fails when the generated file is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

MONITORING = Path(__file__).resolve().parents[1] / "deploy" / "monitoring"
RULES = MONITORING / "alerts.rules.yaml"
OUTPUT = MONITORING / "prometheusrule.yaml"

HEADER = """\
# GENERATED from alerts.rules.yaml by scripts/render_prometheusrule.py (make monitoring): edit
# the rules there. The Prometheus Operator loads it when its ruleSelector matches the
# `release` label (kube-prometheus-stack's default: release=<its Helm release>; adjust).
"""


def prometheus_rule(rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "calls",
            "labels": {
                "app.kubernetes.io/part-of": "calls",
                "release": "kube-prometheus-stack",
            },
        },
        "spec": {"groups": rules["groups"]},
    }


def render() -> str:
    rules = yaml.safe_load(RULES.read_text())
    body = yaml.safe_dump(prometheus_rule(rules), sort_keys=False, width=4096, allow_unicode=True)
    return HEADER + body


def main() -> None:
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
