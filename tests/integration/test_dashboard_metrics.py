"""Every metric the Grafana dashboard and the alert rules name is one a live worker exports
on /metrics (issue 16)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from processors.settings import Settings
from tests.support.kafka import ROOT, WorkerProcess

pytestmark = pytest.mark.integration
MONITORING = ROOT / "deploy" / "monitoring"
NAME = re.compile(r"\bboxsync_[a-z0-9_]+")
HISTOGRAM_SAMPLES = ("_bucket", "_sum", "_count")


def exported(body: str) -> set[str]:
    """Every series name the page offers: samples, and each family's names even before it
    has a sample (a labelled counter the worker has not incremented yet)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(body):
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in HISTOGRAM_SAMPLES)
        else:
            names.add(family.name)
    return names


def dashboard_names() -> set[str]:
    dashboard = json.loads((MONITORING / "grafana" / "boxsync.json").read_text())
    return {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in NAME.findall(target["expr"])}


def alert_names() -> set[str]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return {name for group in rules["groups"] for rule in group["rules"]
            for name in NAME.findall(rule["expr"])}


def test_every_metric_the_dashboard_and_alerts_use_is_exported(
        settings: Settings, start_worker: Callable[..., WorkerProcess]) -> None:
    worker = start_worker(settings)
    code, body = worker.http("/metrics")
    assert code == 200
    names = exported(body.decode())
    used = dashboard_names() | alert_names()
    assert len(used) >= 15
    assert used - names == set()
    for gauge in ("boxsync_consumer_lag_records", "boxsync_stage_records_per_second",
                  "boxsync_read_only_since_timestamp_seconds"):
        assert gauge in names
