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
# Prometheus Operator ServiceMonitor and PrometheusRule, the CloudNativePG Cluster, the
# RabbitMQ Cluster Operator RabbitmqCluster) are checked structurally; any other kind without a
# schema (a typo such as `kind: Deploymnet`, an unknown apiVersion) is an error.
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


def spec_of(doc, known):
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return None, ["spec: missing"]
    unknown = set(spec) - known
    return spec, [f"spec: unknown fields {sorted(unknown)}"] if unknown else []


def check_prometheus_rule(doc):
    spec, errors = spec_of(doc, {"groups"})
    if spec is None:
        return errors
    groups = spec.get("groups")
    if not isinstance(groups, list) or not groups:
        return errors + ["spec.groups: needs at least one group"]
    for i, group in enumerate(groups):
        if not isinstance(group, dict) or not group.get("name"):
            errors.append(f"spec.groups[{i}]: needs a name")
            continue
        unknown = set(group) - {"name", "interval", "rules", "limit", "partial_response_strategy"}
        if unknown:
            errors.append(f"spec.groups[{i}]: unknown fields {sorted(unknown)}")
        for j, rule in enumerate(group.get("rules") or []):
            where = f"spec.groups[{i}].rules[{j}]"
            if not isinstance(rule, dict) or ("alert" in rule) == ("record" in rule):
                errors.append(f"{where}: needs exactly one of alert, record")
                continue
            unknown = set(rule) - {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
            if unknown:
                errors.append(f"{where}: unknown fields {sorted(unknown)}")
            if not isinstance(rule.get("expr"), (str, int)) or rule.get("expr") == "":
                errors.append(f"{where}.expr: missing")
    return errors


def check_cnpg_cluster(doc):
    spec, errors = spec_of(doc, {
        "instances", "imageName", "imageCatalogRef", "primaryUpdateStrategy", "primaryUpdateMethod",
        "bootstrap", "postgresql", "storage", "walStorage", "resources", "affinity", "monitoring",
        "backup", "managed", "superuserSecret", "enableSuperuserAccess", "inheritedMetadata",
        "minSyncReplicas", "maxSyncReplicas", "topologySpreadConstraints", "priorityClassName",
        "startDelay", "stopDelay", "switchoverDelay", "failoverDelay", "logLevel", "env", "envFrom",
        "certificates", "description", "projectedVolumeTemplate", "replica", "externalClusters",
        "serviceAccountTemplate", "plugins", "probes", "enablePDB", "tablespaces", "ephemeralVolumeSource",
    })
    if spec is None:
        return errors
    if not isinstance(spec.get("instances"), int) or spec["instances"] < 1:
        errors.append("spec.instances: needs a positive integer")
    if not isinstance(spec.get("storage"), dict) or not spec["storage"].get("size"):
        errors.append("spec.storage.size: missing")
    initdb = (spec.get("bootstrap") or {}).get("initdb")
    if initdb is not None and not (initdb.get("database") and initdb.get("owner")):
        errors.append("spec.bootstrap.initdb: needs database and owner")
    return errors


def check_rabbitmq_cluster(doc):
    spec, errors = spec_of(doc, {
        "replicas", "image", "imagePullSecrets", "service", "persistence", "resources", "affinity",
        "tolerations", "rabbitmq", "tls", "override", "skipPostDeploySteps",
        "terminationGracePeriodSeconds", "delayStartSeconds", "secretBackend",
        "autoEnableAllFeatureFlags",
    })
    if spec is None:
        return errors
    if not isinstance(spec.get("replicas"), int) or spec["replicas"] < 1:
        errors.append("spec.replicas: needs a positive integer")
    unknown = set(spec.get("rabbitmq") or {}) - {
        "additionalPlugins", "additionalConfig", "advancedConfig", "envConfig", "erlangInetConfig",
    }
    if unknown:
        errors.append(f"spec.rabbitmq: unknown fields {sorted(unknown)}")
    return errors


# Custom resources validated structurally (no schema is bundled for them).
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): check_service_monitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): check_prometheus_rule,
    ("postgresql.cnpg.io/v1", "Cluster"): check_cnpg_cluster,
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): check_rabbitmq_cluster,
}

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
        check = CRD_KINDS.get((doc["apiVersion"], doc["kind"]))
        if check is not None:
            for error in check(doc):
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
