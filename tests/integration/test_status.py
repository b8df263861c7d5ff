"""`boxsync status` and the lag gauge against a real worker, broker and database (issue 16)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from processors.settings import Settings
from tests.support import jira_bodies as jb
from tests.support.kafka import ROOT, WorkerProcess, publish, worker_env

pytestmark = pytest.mark.integration
SITE = "status.atlassian.net"


def bodies(count: int, start: int = 0) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    return [jb.updated(now, jb.user("557058:alice", "Alice"),
                       jb.issue(SITE, str(10_000 + n), f"ST-{n}", summary=f"task {n}"),
                       50_000 + n, [jb.item("summary", f"task {n}")])
            for n in range(start, start + count)]


def status_json(settings: Settings, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "processors.cli.main", "status", "--json",
                           *args], cwd=ROOT, env={**os.environ, **worker_env(settings)},
                          capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = orjson.loads(done.stdout)
    return document


def samples(worker: WorkerProcess, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    code, body = worker.http("/metrics")
    assert code == 200
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples if s.name == name}


def wait_for(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.5)


def stage(document: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [s for s in document["stages"] if s["stage"] == name]
    return found


def test_status_and_lag_gauge_follow_a_live_worker(
        settings: Settings, start_worker: Callable[..., WorkerProcess]) -> None:
    worker = start_worker(settings, BOXSYNC_JIRA_SITE=SITE)
    publish(settings, "jira.events", bodies(40))
    publish(settings, "jira.events", [b"not json {", b"\x00\x01"])
    jira = f"{settings.topic_prefix}jira.events"

    def caught_up() -> bool:
        lag = samples(worker, "boxsync_consumer_lag_records")
        ingest = {dict(k)["partition"]: v for k, v in lag.items()
                  if dict(k)["stage"] == "ingest" and dict(k)["topic"] == jira}
        return sorted(ingest) == ["0", "1"] and not any(ingest.values())

    wait_for(caught_up)
    # The gauges come from the stage processes' reports, once a second each: the lag of one
    # report may show caught up before the report with the batch's rate has arrived.
    wait_for(lambda: samples(worker, "boxsync_stage_records_per_second").get(
        (("stage", "ingest"),), 0.0) > 0)
    metrics_url = f"http://127.0.0.1:{worker.port}/metrics"
    wait_for(lambda: status_json(settings, "--worker", metrics_url)["last_update"] is not None)

    live = status_json(settings, "--worker", metrics_url)
    ingest = stage(live, "ingest")
    jira_rows = [p for p in ingest["partitions"] if p["topic"] == jira]
    assert len(jira_rows) == 2
    assert sum(p["high_watermark"] for p in jira_rows) >= 42
    assert all(p["committed"] == p["high_watermark"] and p["lag"] == 0 for p in jira_rows)
    assert ingest["records_per_second"] > 0
    assert live["workers"] == {metrics_url: "ok"}
    assert live["dead_letters_last_hour"] == {"invalid_json": 2}
    assert live["last_update"]["task_id"].startswith(f"jira:{SITE}:")
    assert set(live["runs"]) == {"pending", "queued", "running"}
    assert set(live["boxes_by_sync_state"]) >= {"idle", "running"}

    worker.stop()
    publish(settings, "jira.events", bodies(5, start=100))
    stopped = status_json(settings, "--worker", metrics_url)
    assert stage(stopped, "ingest")["lag"] == 5
    assert stage(stopped, "ingest")["records_per_second"] is None
    assert stopped["workers"][metrics_url].startswith("unreachable")
