"""`boxsync replay` as an operator runs it, against the real broker (and a worker)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from processors.settings import Settings
from tests.support import jira_bodies as jb
from tests.support.kafka import (
    ROOT,
    WorkerProcess,
    publish,
    read_records,
    read_topic,
    worker_env,
)

pytestmark = pytest.mark.integration


def boxsync(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "processors.cli.main", *args], cwd=ROOT,
                          env={**os.environ, **worker_env(settings)}, capture_output=True,
                          text=True, timeout=90, check=False)


def test_dead_letters_go_back_to_their_topic_with_their_original_bytes(
        settings: Settings) -> None:
    originals = [b'{"webhookEvent": "jira:issue_updated", "fixed": 1}', b'{"x": 2}']
    letters = [{"schema_version": 1, "source_topic": f"{settings.topic_prefix}jira.events",
                "partition": 0, "offset": n, "key": "OPS-1",
                "value": base64.b64encode(raw).decode(),
                "headers": {"x-atlassian-webhook-identifier": f"d-{n}"},
                "error": {"type": "invalid_json", "message": "..."}, "processor": "ingest",
                "at": "2026-11-28T02:00:00.000Z"} for n, raw in enumerate(originals)]
    publish(settings, "sync.deadletter", letters)

    dry = boxsync(settings, "replay", "--topic", "sync.deadletter", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would replay 2 records from {settings.topic_prefix}sync.deadletter" in dry.stdout
    assert read_records(settings, "jira.events", settle=1) == []

    done = boxsync(settings, "replay", "--topic", "sync.deadletter")
    assert done.returncode == 0, done.stderr
    assert f"to {settings.topic_prefix}jira.events (2)" in done.stdout
    replayed = read_records(settings, "jira.events", expect=2, settle=1)
    assert sorted(record.value for record in replayed) == sorted(originals)
    for record in replayed:
        assert record.headers["x-atlassian-webhook-identifier"].startswith(b"d-")
        assert record.headers["x-boxsync-replayed-from"].startswith(
            f"{settings.topic_prefix}sync.deadletter:".encode())


def test_since_bounds_the_replay_and_to_topic_redirects_it(settings: Settings) -> None:
    publish(settings, "jira.events", [b'{"n": 1}', b'{"n": 2}'])
    time.sleep(1.5)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 0.5)) + "Z"
    time.sleep(0.6)
    publish(settings, "jira.events", [b'{"n": 3}'])
    result = boxsync(settings, "replay", "--topic", "jira.events", "--since", since,
                     "--to-topic", "trello.events", "--rate", "50")
    assert result.returncode == 0, result.stderr
    assert [r.value for r in read_records(settings, "trello.events", expect=1, settle=2)] \
        == [b'{"n": 3}']


def test_replaying_applied_upstream_events_changes_nothing(
        settings: Settings, start_worker: Callable[..., WorkerProcess]) -> None:
    """Replays and retries change nothing twice: the replayed body keeps its event id."""
    site = f"{settings.topic_prefix.rstrip('.')}.atlassian.net"
    worker = start_worker(settings)
    body = jb.updated(int(time.time() * 1000) - 60_000, jb.user("557058:a", "A"),
                      jb.issue(site, "900", "OPS-9"), 1, [jb.item("summary", "A task")])
    publish(settings, "jira.events", [body])
    assert len(read_topic(settings, "task.updates", expect=1, timeout=30)) == 1

    result = boxsync(settings, "replay", "--topic", "jira.events")
    assert result.returncode == 0, result.stderr
    assert len(read_topic(settings, "task.updates", expect=2, timeout=12)) == 1
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if b'boxsync_events_duplicate_total{source="jira"} 1.0' in worker.http("/metrics")[1]:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the replayed body was not recognized as a duplicate")
