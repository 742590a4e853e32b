#!/usr/bin/env bash
# Render every Kustomize tree under deploy/k8s (the base and each overlay) with
# `kubectl kustomize` and validate every rendered document offline against the Kubernetes
# OpenAPI schemas bundled in kubernetes-validate (strict: unknown fields are errors).
#
#   scripts/validate-manifests.sh                          # base + every overlay
#   scripts/validate-manifests.sh deploy/k8s/overlays/dev  # just these
#
# Environment:
#   K8S_VERSIONS  Kubernetes versions to validate against (default "1.29 1.33")
#   PYTHON        a Python with kubernetes-validate installed (default: `uv run python`, falling
#                 back to `uv run --with kubernetes-validate python`)
#
# Custom resources have no bundled schema: the ones listed in CRD_KINDS below (the
# Prometheus Operator ServiceMonitor) are checked structurally; any other kind without a schema
# (a typo such as `kind: Deploymnet`, an unknown apiVersion) is an error.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSIONS="${K8S_VERSIONS:-1.29 1.33}"

if ! command -v kubectl >/dev/null 2>&1; then
  echo "validate-manifests: kubectl is required (kubectl kustomize renders the overlays)" >&2
  exit 2
fi

if [[ -n "${PYTHON:-}" ]]; then
  read -r -a python <<<"$PYTHON"
elif uv run --quiet python -c 'import kubernetes_validate' >/dev/null 2>&1; then
  python=(uv run --quiet python)
else
  python=(uv run --quiet --with kubernetes-validate python)
fi

if [[ $# -gt 0 ]]; then
  trees=("$@")
else
  trees=(deploy/k8s/base)
  for overlay in deploy/k8s/overlays/*/; do trees+=("${overlay%/}"); done
fi

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

rendered=()
for tree in "${trees[@]}"; do
  out="$workdir/$(echo "$tree" | tr '/' '_').yaml"
  if ! kubectl kustomize "$tree" >"$out"; then
    echo "FAIL $tree: kubectl kustomize could not render it" >&2
    exit 1
  fi
  rendered+=("$tree=$out")
done

"${python[@]}" - "$K8S_VERSIONS" "${rendered[@]}" <<'PY'
import sys

import yaml
from kubernetes_validate import utils

# Custom resources validated structurally (no schema is bundled for them).
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def check_service_monitor(doc):
    errors = []
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return ["spec: missing"]
    unknown = set(spec) - {
        "selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels",
        "podTargetLabels", "sampleLimit", "targetLimit", "labelLimit", "attachMetadata",
    }
    if unknown:
        errors.append(f"spec: unknown fields {sorted(unknown)}")
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not (
        selector.get("matchLabels") or selector.get("matchExpressions")
    ):
        errors.append("spec.selector: needs matchLabels or matchExpressions")
    endpoints = spec.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints:
        errors.append("spec.endpoints: needs at least one endpoint")
    else:
        for i, endpoint in enumerate(endpoints):
            if not isinstance(endpoint, dict) or not (
                endpoint.get("port") or endpoint.get("targetPort")
            ):
                errors.append(f"spec.endpoints[{i}]: needs port (a Service port name)")
            elif not str(endpoint.get("path", "/metrics")).startswith("/"):
                errors.append(f"spec.endpoints[{i}].path: must start with /")
    return errors


versions = sys.argv[1].split()
failures = 0
for arg in sys.argv[2:]:
    tree, _, path = arg.partition("=")
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    if not docs:
        print(f"FAIL {tree}: rendered no documents")
        failures += 1
        continue
    tree_failures = 0
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            print(f"FAIL {tree}: a document without kind/apiVersion: {str(doc)[:80]}")
            tree_failures += 1
            continue
        name = f"{doc['kind']}/{doc.get('metadata', {}).get('name', '?')}"
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            for error in check_service_monitor(doc):
                print(f"FAIL {tree} {name} (custom resource, structural check): {error}")
                tree_failures += 1
            continue
        for version in versions:
            try:
                utils.validate(doc, version, strict=True)
            except utils.ValidationError as e:
                where = ".".join(str(p) for p in e.path) or "(root)"
                print(f"FAIL {tree} {name} (Kubernetes {version}): {where}: {e.message}")
                tree_failures += 1
            except utils.SchemaNotFoundError as e:
                print(f"FAIL {tree} {name}: {e.message} (a typo, or a CRD to add to CRD_KINDS)")
                tree_failures += 1
    status = "ok  " if not tree_failures else "FAIL"
    print(f"{status} {tree}: {len(docs)} documents, Kubernetes {', '.join(versions)}")
    failures += tree_failures
sys.exit(1 if failures else 0)
PY
