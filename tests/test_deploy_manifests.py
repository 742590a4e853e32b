"""The deployment artifacts in deploy/: every Kustomize overlay renders and validates against the
Kubernetes schemas (scripts/validate-manifests.sh), and keeps the properties a production pod
needs; the Dockerfiles and the Compose file stay consistent with the workspace.

Needs neither a cluster nor a Docker engine: only `kubectl` (for `kubectl kustomize`; the
Kubernetes tests skip without it) and the dev dependency kubernetes-validate (brings PyYAML).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip(
    "yaml", reason="PyYAML comes with the dev dependency kubernetes-validate"
)

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SCRIPT = ROOT / "scripts" / "validate-manifests.sh"
OVERLAYS = sorted(
    p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file()
)

# Deployment name -> (port, workspace package, package directory, module)
SERVICES = {
    "api-gateway": (8080, "calls-gateway", "services/api-gateway", "gateway"),
    "call-log": (8081, "calls-call-log", "services/call-log", "call_log"),
    "dialer": (8082, "calls-dialer", "services/dialer", "dialer"),
    "recordings": (8083, "calls-recordings", "services/recordings", "recordings"),
    "webhooks": (8084, "calls-webhooks", "services/webhooks", "webhooks"),
}
SIMULATOR = ("carrier-sim", (8090, "carrier-sim", "tools/carrier-simulator", "carrier_sim"))
# images with migrations, in order
MIGRATING = ["gateway", "dialer", "call-log", "recordings", "webhooks"]
AUTOSCALED = {"api-gateway", "call-log"}
# Secrets the database and broker operators write, by the custom resource that makes them
OPERATOR_SECRETS = {
    ("Cluster", "calls-postgres"): "calls-postgres-app",
    ("RabbitmqCluster", "calls-rabbitmq"): "calls-rabbitmq-default-user",
}

requires_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl is not installed (needed for kustomize)"
)

Doc = dict[str, Any]


def render(tree: Path) -> list[Doc]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(tree)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def run_validator(*trees: Path) -> subprocess.CompletedProcess[str]:
    pytest.importorskip(
        "kubernetes_validate", reason="add kubernetes-validate to the dev dependency group"
    )
    return subprocess.run(
        [str(SCRIPT), *map(str, trees)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=300,
    )


def of_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def calls_config(docs: list[Doc]) -> dict[str, str]:
    """The data of calls-config (generated with a content hash in its name)."""
    [config] = [d for n, d in of_kind(docs, "ConfigMap").items() if n.startswith("calls-config")]
    data: dict[str, str] = config["data"]
    return data


def containers(pod_spec: Doc) -> list[Doc]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Doc]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (needed for kustomize)")
    return request.param, render(K8S / "overlays" / request.param)


# ---- schema validation -------------------------------------------------------------------------


@requires_kubectl
@pytest.mark.parametrize("tree", ["base", *(f"overlays/{name}" for name in OVERLAYS)])
def test_renders_and_validates_against_the_kubernetes_schemas(tree: str) -> None:
    result = run_validator(K8S / tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok   {K8S / tree}" in result.stdout


@requires_kubectl
def test_a_broken_manifest_fails_validation(tmp_path: Path) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    deployment = copy / "base" / "api-gateway.yaml"
    text = deployment.read_text()
    assert "periodSeconds: 10" in text
    deployment.write_text(text.replace("periodSeconds: 10", "periodSecond: 10", 1))
    result = run_validator(copy / "overlays" / "dev")
    assert result.returncode != 0
    assert "periodSecond" in result.stdout


# ---- what every pod needs ----------------------------------------------------------------------


def test_every_deployment_is_probed_bounded_and_unprivileged(
    overlay: tuple[str, list[Doc]],
) -> None:
    _, docs = overlay
    deployments = of_kind(docs, "Deployment")
    assert set(SERVICES) <= set(deployments)
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > 20, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["enableServiceLinks"] is False, name  # CALL_LOG_PORT=tcp://… would clash
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            where = f"{name}/{container['name']}"
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                assert probe in container, f"{where}: no {probe}"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", where
            assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep", where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), where
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert re.fullmatch(r"ghcr\.io/example/calls-[a-z-]+:[\w.-]+", container["image"])


def test_every_service_routes_to_its_deployment(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    deployments, services = of_kind(docs, "Deployment"), of_kind(docs, "Service")
    config = calls_config(docs)
    for name, (port, *_) in SERVICES.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        selector = services[name]["spec"]["selector"]
        assert selector.items() <= labels.items(), name
        [container] = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert {"name": "http", "containerPort": port, "protocol": "TCP"} in container["ports"]
        assert services[name]["spec"]["ports"][0]["port"] == port
        assert services[name]["spec"]["ports"][0]["targetPort"] == "http"
    assert config["CALL_LOG_URL"] == "http://call-log:8081"
    assert config["MIGRATE_ON_START"] == "false"
    assert config["LOG_FORMAT"] == "json"


def test_config_and_secret_references_resolve(overlay: tuple[str, list[Doc]]) -> None:
    name, docs = overlay
    config_maps, secrets = set(of_kind(docs, "ConfigMap")), set(of_kind(docs, "Secret"))
    if name.startswith("prod"):
        secrets.add("calls-secrets")  # created by the operator, never committed
    for (kind, owner), secret in OPERATOR_SECRETS.items():
        if owner in of_kind(docs, kind):
            secrets.add(secret)  # written by the database or broker operator
    for workload in [*of_kind(docs, "Deployment").values(), *of_kind(docs, "Job").values()]:
        for container in containers(workload["spec"]["template"]["spec"]):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets, (workload["metadata"]["name"], env["name"])


def test_network_policies_deny_by_default(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    policies = of_kind(docs, "NetworkPolicy")
    deny = [
        p
        for p in policies.values()
        if p["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/part-of": "calls"}}
        and p["spec"]["policyTypes"] == ["Ingress"]
        and not p["spec"].get("ingress")
    ]
    assert deny, "no default-deny ingress policy for the Calls pods"
    [gateway_rule] = policies["api-gateway-ingress"]["spec"]["ingress"]
    assert "from" not in gateway_rule  # from anywhere
    assert gateway_rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    [call_log_rule] = policies["call-log-ingress"]["spec"]["ingress"]
    assert call_log_rule["ports"] == [{"port": 8081, "protocol": "TCP"}]
    [peer] = call_log_rule["from"]
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "api-gateway"
    [metrics_rule] = policies["calls-metrics-scraping"]["spec"]["ingress"]
    assert "namespaceSelector" in metrics_rule["from"][0]
    assert {p["port"] for p in metrics_rule["ports"]} == {p for p, *_ in SERVICES.values()}


def test_autoscaling_and_disruption_budgets(overlay: tuple[str, list[Doc]]) -> None:
    name, docs = overlay
    deployments, hpas = of_kind(docs, "Deployment"), of_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == AUTOSCALED
    for target, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": target,
        }
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert "replicas" not in deployments[target]["spec"], f"{target}: the HPA owns replicas"
    budgets = of_kind(docs, "PodDisruptionBudget")
    for service in SERVICES:
        spec = budgets[service]["spec"]
        assert ("minAvailable" in spec) != ("maxUnavailable" in spec), service
        labels = deployments[service]["spec"]["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items()
        if name.startswith("prod"):
            assert "minAvailable" in spec, service


def test_the_migration_job_runs_every_migration_in_order(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    job = of_kind(docs, "Job")["calls-migrate"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert [c["name"] for c in pod["initContainers"]] == MIGRATING
    for container in pod["initContainers"]:
        assert container["args"] == ["migrate"]
        assert container["image"].split(":")[0].endswith(f"calls-{container['name']}")


def test_overlay_specifics(overlay: tuple[str, list[Doc]]) -> None:
    name, docs = overlay
    deployments = of_kind(docs, "Deployment")
    config = calls_config(docs)
    namespaces = of_kind(docs, "Namespace")
    assert len(namespaces) == 1
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == set(
        namespaces
    )
    if name == "dev":
        assert "carrier-sim" in deployments
        assert config["TWILIO_API_URL"] == "http://carrier-sim:8090"
        assert all(d["spec"].get("replicas", 1) == 1 for d in deployments.values())
        assert all(
            h["spec"]["minReplicas"] == 1 for h in of_kind(docs, "HorizontalPodAutoscaler").values()
        )
        assert "calls-secrets" in {n.rsplit("-", 1)[0] for n in of_kind(docs, "Secret")}
    if name.startswith("prod"):
        assert "carrier-sim" not in deployments
        assert not of_kind(docs, "Secret"), "production secrets are never committed"
        assert config["TWILIO_API_URL"] == ""
        assert config["PUBLIC_BASE_URL"].startswith("https://")
        for deployment in deployments.values():
            for container in deployment["spec"]["template"]["spec"]["containers"]:
                assert not container["image"].endswith((":latest", ":dev")), container["image"]
        monitor = of_kind(docs, "ServiceMonitor")["calls"]
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        [endpoint] = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        [expression] = monitor["spec"]["selector"]["matchExpressions"]
        # every service, and the relay (the gateway's image, a Deployment and Service of its own)
        assert set(expression["values"]) == {*SERVICES, "relay"}
        for service in of_kind(docs, "Service").values():
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def env_of(workload: Doc) -> dict[str, list[Doc]]:
    """Container name -> its env list, for every container of a Deployment or Job."""
    pod = workload["spec"]["template"]["spec"]
    return {c["name"]: c.get("env", []) for c in containers(pod)}


def workloads(docs: list[Doc]) -> dict[str, Doc]:
    return {**of_kind(docs, "Deployment"), **of_kind(docs, "Job")}


@requires_kubectl
def test_the_operator_components_run_postgres_and_rabbitmq_and_wire_their_secrets() -> None:
    plain = render(K8S / "overlays" / "prod")
    docs = render(K8S / "overlays" / "prod-with-operators")
    assert not of_kind(plain, "Cluster")
    assert not of_kind(plain, "RabbitmqCluster")

    cluster = of_kind(docs, "Cluster")["calls-postgres"]
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["spec"]["instances"] == 3
    assert cluster["spec"]["imageName"].endswith(":15")
    assert cluster["spec"]["bootstrap"]["initdb"] == {
        "database": "calls",
        "owner": "calls",
        # the oldest-transaction metric sees every session's transaction only with pg_monitor
        "postInitSQL": ["GRANT pg_monitor TO calls"],
    }
    rabbit = of_kind(docs, "RabbitmqCluster")["calls-rabbitmq"]
    assert rabbit["apiVersion"] == "rabbitmq.com/v1beta1"
    assert rabbit["spec"]["replicas"] == 3
    for resource in (cluster, rabbit):  # their pods must not fall under the default deny
        assert "app.kubernetes.io/part-of" not in resource["metadata"].get("labels", {})
    assert not [d for d in docs if d["kind"] == "OperatorEnv"], "local-config leaked"

    before, after = workloads(plain), workloads(docs)
    assert set(before) == set(after)
    for name, workload in after.items():
        for container, env in env_of(workload).items():
            where = f"{name}/{container}"
            names = [e["name"] for e in env]
            had = {e["name"] for e in env_of(before[name])[container]}
            # nothing else changed: the same variables, plus the broker credentials
            assert set(names) - {"AMQP_USERNAME", "AMQP_PASSWORD"} == had, where
            by_name = {e["name"]: e for e in env}
            if "DATABASE_URL" in by_name:
                assert by_name["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
                    "name": "calls-postgres-app",
                    "key": "uri",
                }, where
            if "AMQP_URL" in by_name:
                url = by_name["AMQP_URL"]["value"]
                assert url == "amqp://$(AMQP_USERNAME):$(AMQP_PASSWORD)@calls-rabbitmq:5672/"
                # $(VAR) expands only variables defined earlier in the list
                for part, key in (("AMQP_USERNAME", "username"), ("AMQP_PASSWORD", "password")):
                    assert names.index(part) < names.index("AMQP_URL"), where
                    assert by_name[part]["valueFrom"]["secretKeyRef"] == {
                        "name": "calls-rabbitmq-default-user",
                        "key": key,
                    }, where
            else:
                assert "AMQP_USERNAME" not in by_name, (
                    f"{where} gets broker credentials it never uses"
                )
            for variable in ("DATABASE_URL", "AMQP_URL"):
                ref = by_name.get(variable, {}).get("valueFrom", {}).get("secretKeyRef", {})
                assert ref.get("name") != "calls-secrets", f"{where}: {variable} from calls-secrets"


# ---- images and Compose ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "spec"), [*SERVICES.items(), SIMULATOR])
def test_dockerfile_builds_one_package_without_dev_dependencies(
    name: str, spec: tuple[int, str, str, str]
) -> None:
    port, package, package_dir, module = spec
    dockerfile = (DEPLOY / "docker" / f"{name}.Dockerfile").read_text()
    project = tomllib.loads((ROOT / package_dir / "pyproject.toml").read_text())["project"]
    assert project["name"] == package
    assert (ROOT / package_dir / "src" / module / "__main__.py").is_file()
    assert f"ARG PACKAGE={package}\n" in dockerfile
    assert f"ARG PACKAGE_DIR={package_dir}\n" in dockerfile
    assert 'uv sync --frozen --no-dev --no-editable --package "${PACKAGE}"' in dockerfile
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS runtime$", dockerfile, re.M)
    assert "\nUSER 10001:10001\n" in dockerfile
    assert f"\nEXPOSE {port}\n" in dockerfile
    assert f'\nENTRYPOINT ["python", "-m", "{module}"]\n' in dockerfile
    # every workspace member's pyproject.toml is copied (uv reads the whole workspace)
    for member in ROOT.glob("*/*/pyproject.toml"):
        relative = member.relative_to(ROOT)
        if relative.parts[0] in ("libs", "services", "tools"):
            assert f"COPY {relative} {relative.parent}/\n" in dockerfile


def test_compose_runs_migrations_before_every_service() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        if "build" in service:
            assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert services["migrate-dialer"]["depends_on"]["migrate-gateway"] == {
        "condition": "service_completed_successfully"
    }
    for name in [*SERVICES, "carrier-sim"]:
        assert "test" in services[name]["healthcheck"], name
    for name in SERVICES:
        assert services[name]["depends_on"]["migrate-call-log"] == {
            "condition": "service_completed_successfully"
        }
        assert services[name]["environment"]["MIGRATE_ON_START"] == "false"
    assert services["postgres"]["image"] == "postgres:15"
    assert services["rabbitmq"]["image"] == "rabbitmq:3.13-management"
