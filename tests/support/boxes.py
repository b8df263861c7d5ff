"""Helpers of the integration tests that define boxes and run full syncs through a worker
against the local Jira (tests.support.fake_sources)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from processors.settings import Settings
from processors.store import db
from tests.support.fake_sources import FakeSources, jira_issue
from tests.support.kafka import ROOT, publish_keyed, read_to_end, read_topic, worker_env

OLGA = {"kind": "user", "id": "557058:olga", "name": "Olga Owner", "source": "jira"}


OLD = "2025-03-01T10:00:00.000+0000"


def site_of(settings: Settings) -> str:
    return f"{settings.topic_prefix.rstrip('.')}.atlassian.net"


def issues(site: str) -> list[dict[str, Any]]:
    """OPS-1..3 (ids 1..3) and SEC-1..2 (ids 10001, 10002)."""
    todo = {"name": "To Do", "statusCategory": {"key": "new"}}
    return [jira_issue(n, f"OPS-{n}", site=site, updated=OLD, summary=f"ops {n}", status=todo)
            for n in (1, 2, 3)] + [
        jira_issue(10_000 + n, f"SEC-{n}", site=site, updated=OLD, summary=f"sec {n}",
                   status=todo) for n in (1, 2)]


def box(box_id: str, projects: list[str]) -> dict[str, Any]:
    return {"box_id": box_id, "name": "Program", "box_type": "program", "scope_type": "own",
            "status": "in_progress", "scope": {"jira_projects": projects},
            "scope_owner": OLGA, "admins": [OLGA["id"]]}


def grant(project: str) -> tuple[str, dict[str, Any]]:
    return (f"{OLGA['id']}|{project}", {"user_id": OLGA["id"], "project": project,
                                         "permissions": ["BROWSE_PROJECTS"]})


def stored(url: str, topic: str, key: str) -> Any:
    with db.connect(url, autocommit=True) as conn:
        row = conn.execute("""SELECT value FROM reference_records
                               WHERE topic = %s AND key = %s AND NOT deleted""",
                           (topic, key)).fetchone()
    return row[0] if row else None


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.5)


def full_synced(settings: Settings, box_id: str, before: set[str]) -> set[str]:
    """Task ids of the full-sync updates to the box whose update ids are not in `before`
    (a run's update ids are its own: they hash its run id)."""
    return {u["task_id"] for u in read_topic(settings, "task.updates", timeout=5, settle=1)
            if u["sync_type"] == "full" and box_id in u["box_ids"]
            and u["update_id"] not in before}


def run_full_sync(settings: Settings, box_id: str, command_id: str) -> set[str]:
    before = {u["update_id"] for u in read_to_end(settings, "task.updates")}
    publish_keyed(settings, "sync.commands", [(box_id, {
        "schema_version": 1, "command_id": command_id, "type": "resync_box",
        "box_id": box_id, "requested_by": OLGA, "requested_at": "2026-12-04T10:00:00Z"})])
    deadline = time.monotonic() + 60
    while True:
        states = [s for s in read_to_end(settings, "sync.status")
                  if s.get("command_id") == command_id]
        if any(s["state"] in ("completed", "failed", "refused") for s in states):
            break
        assert time.monotonic() < deadline, f"full sync {command_id} did not end: {states}"
        time.sleep(0.5)
    assert states[-1]["state"] == "completed", states[-1]
    return full_synced(settings, box_id, before)


def sync_env(fake: FakeSources) -> dict[str, str]:
    return {"BOXSYNC_JIRA_BASE_URL": fake.url, "BOXSYNC_JIRA_EMAIL": fake.jira_email,
            "BOXSYNC_JIRA_API_TOKEN": fake.jira_api_token}


def box_show(settings: Settings, box_id: str) -> dict[str, Any]:
    """`boxsync box show BOX_ID --json` of the settings' tenant, as a separate process."""
    done = subprocess.run([sys.executable, "-m", "processors.cli.main", "box", "show", box_id,
                           "--json"], cwd=ROOT, env={**os.environ, **worker_env(settings)},
                          capture_output=True, timeout=60, check=True)
    report: dict[str, Any] = orjson.loads(done.stdout)
    return report
