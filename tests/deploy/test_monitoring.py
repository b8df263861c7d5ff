"""deploy/monitoring: the alert rules checked and unit-tested by promtool, the scrape configs
checked by it, the Grafana dashboard well-formed (issue 16). That each metric they name is one
the worker exports is tested against a live worker in
tests/integration/test_dashboard_metrics.py."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.deploy.conftest import ROOT

MONITORING = ROOT / "deploy" / "monitoring"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, check=False,
                          cwd=MONITORING)


def test_promtool_checks_the_rules(promtool: str) -> None:
    done = run(promtool, "check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def test_promtool_unit_tests_every_alert(promtool: str) -> None:
    done = run(promtool, "test", "rules", "tests/alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = {line.split(":", 1)[1].strip() for line in (MONITORING / "alerts.yml").read_text()
              .splitlines() if line.strip().startswith("- alert:")}
    tested = (MONITORING / "tests" / "alerts_test.yml").read_text()
    for alert in alerts:  # each is expected to fire somewhere
        assert f"alertname: {alert}" in tested, alert


def test_promtool_checks_the_scrape_config(promtool: str) -> None:
    done = run(promtool, "check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_checks_the_kubernetes_scrape_config(promtool: str) -> None:
    done = run(promtool, "check", "config", "prometheus-kubernetes.yml")
    if "kubernetes_sd_configs not found" in done.stdout + done.stderr:
        pytest.skip("this promtool (Debian's build) has no Kubernetes service discovery")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_is_grafana_json_with_a_query_per_panel() -> None:
    dashboard = json.loads((MONITORING / "grafana" / "boxsync.json").read_text())
    assert dashboard["uid"] == "boxsync"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 12
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert all("boxsync_" in target["expr"] for target in panel["targets"])
        assert panel["datasource"]["uid"] == "${datasource}"
