"""The Helm chart, linted and rendered by helm, and the rendered YAML read back (issue 16)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from processors.settings import load_settings
from schemas.topics import ALL_TOPICS
from tests.deploy.conftest import CHART, PRODUCTION

SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|_PAT|DATABASE_URL)$")
WORKLOADS = {"StatefulSet", "Deployment", "DaemonSet", "Job"}


def helm_run(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120,
                          check=False)


def render(helm: str, *args: str) -> list[dict[str, Any]]:
    done = helm_run(helm, "template", "boxsync", str(CHART), *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.fixture(scope="module", params=["defaults", "production"])
def rendered(request: pytest.FixtureRequest, helm: str) -> list[dict[str, Any]]:
    return render(helm) if request.param == "defaults" else render(helm, "-f", str(PRODUCTION))


@pytest.mark.parametrize("values", [[], ["-f", str(PRODUCTION)]], ids=["defaults", "production"])
def test_helm_lint_passes(helm: str, values: list[str]) -> None:
    done = helm_run(helm, "lint", "--strict", str(CHART), *values)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_container_has_limits_and_the_workers_probes(rendered: list[dict[str, Any]]
                                                           ) -> None:
    workloads = [doc for doc in rendered if doc["kind"] in WORKLOADS]
    assert {doc["kind"] for doc in workloads} == {"StatefulSet", "Job"}
    for doc in workloads:
        for container in containers(doc):
            limits = container["resources"]["limits"]
            assert {"cpu", "memory"} <= set(limits), (doc["kind"], container["name"])
            assert container["resources"]["requests"]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            if doc["kind"] == "Job":  # a one-shot command with no web server: a deadline
                assert doc["spec"]["activeDeadlineSeconds"] > 0
                continue
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_no_secret_in_a_configmap_and_none_rendered_by_default(
        rendered: list[dict[str, Any]]) -> None:
    assert kinds(rendered, "Secret") == []
    for config_map in kinds(rendered, "ConfigMap"):
        for key in config_map["data"]:
            assert not SECRET_NAME.search(key), f"{key} in ConfigMap {config_map['metadata']}"
    [worker] = kinds(rendered, "StatefulSet")
    env = {item["name"]: item for item in containers(worker)[0]["env"]}
    assert "secretKeyRef" in env["BOXSYNC_DATABASE_URL"]["valueFrom"]
    if "BOXSYNC_KAFKA_SASL_PASSWORD" in env:
        assert "secretKeyRef" in env["BOXSYNC_KAFKA_SASL_PASSWORD"]["valueFrom"]


def test_the_configmap_is_settings_boxsync_accepts(rendered: list[dict[str, Any]],
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    [config_map] = [doc for doc in kinds(rendered, "ConfigMap")
                    if "helm.sh/hook" not in (doc["metadata"].get("annotations") or {})]
    for name, value in config_map["data"].items():
        if name.startswith("BOXSYNC_"):
            monkeypatch.setenv(name, value)
    if "BOXSYNC_KAFKA_SSL_CA_FILE" in config_map["data"]:  # mounted from a Secret in the pod
        ca = tmp_path / "ca.crt"
        ca.write_text("pem")
        monkeypatch.setenv("BOXSYNC_KAFKA_SSL_CA_FILE", str(ca))
    monkeypatch.setenv("BOXSYNC_KAFKA_SASL_PASSWORD", "from-the-secret")
    settings = load_settings()
    assert settings.web_bind == "0.0.0.0"
    assert settings.partitions == int(config_map["data"]["BOXSYNC_PARTITIONS"])


def test_the_hook_job_runs_topics_create_and_migrate_before_an_upgrade(
        rendered: list[dict[str, Any]]) -> None:
    [job] = kinds(rendered, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    command = " ".join(containers(job)[0]["command"])
    assert "boxsync topics create" in command and "boxsync db migrate" in command
    hook_config = [doc for doc in kinds(rendered, "ConfigMap")
                   if (doc["metadata"].get("annotations") or {}).get("helm.sh/hook")]
    assert int(hook_config[0]["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0


def test_production_topics_equal_the_registry(helm: str) -> None:
    topics = kinds(render(helm, "-f", str(PRODUCTION)), "KafkaTopic")
    found = {t["spec"]["topicName"]: t["spec"]["config"] for t in topics}
    assert set(found) == {spec.name for spec in ALL_TOPICS}
    for spec in ALL_TOPICS:
        config = {key: str(value) for key, value in found[spec.name].items()}
        assert config.pop("min.insync.replicas") == "2"
        assert config == spec.config(), spec.name
    assert {t["spec"]["replicas"] for t in topics} == {3}
    assert {t["spec"]["partitions"] for t in topics} == {12}


def test_values_topic_list_equals_the_registry() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert [(t["name"], t["cleanup"], t["retentionMs"]) for t in values["topics"]] == [
        (spec.name, spec.cleanup.value, spec.retention_ms) for spec in ALL_TOPICS]


def test_a_secret_in_settings_is_refused(helm: str) -> None:
    done = helm_run(helm, "template", "b", str(CHART), "--set", "settings.JIRA_API_TOKEN=x")
    assert done.returncode != 0
    assert "is a secret: put BOXSYNC_JIRA_API_TOKEN in secrets.existingSecret" in done.stderr


def test_more_workers_than_partitions_is_refused(helm: str) -> None:
    done = helm_run(helm, "template", "b", str(CHART), "--set", "replicas=13")
    assert done.returncode != 0 and "above settings.PARTITIONS" in done.stderr


def test_optional_parts_are_off_by_default_and_the_hpa_is_capped(helm: str) -> None:
    defaults = render(helm)
    for kind in ("HorizontalPodAutoscaler", "Ingress", "ServiceMonitor", "KafkaTopic"):
        assert kinds(defaults, kind) == [], kind
    scaled = render(helm, "--set", "autoscaling.enabled=true,autoscaling.maxReplicas=50")
    [hpa] = kinds(scaled, "HorizontalPodAutoscaler")
    assert hpa["spec"]["maxReplicas"] == 12
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "boxsync_consumer_lag_records"
    [worker] = kinds(scaled, "StatefulSet")
    assert "replicas" not in worker["spec"]  # the HPA owns it


def test_pdb_and_gateway_service_select_the_workers(rendered: list[dict[str, Any]]) -> None:
    [worker] = kinds(rendered, "StatefulSet")
    labels = worker["spec"]["template"]["metadata"]["labels"]
    [pdb] = kinds(rendered, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for service in kinds(rendered, "Service"):
        assert service["spec"]["selector"].items() <= labels.items()
