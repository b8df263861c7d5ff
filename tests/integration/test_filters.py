"""Permission and box-state filters, corrupted scope and OKR progress on the real broker and
database, through `boxsync worker` processes (issue 4).

One scenario per test, in phases a few seconds apart (the interval here is 2 s): reference
data on the compacted topics, changes as Jira webhook bodies on `jira.events`, commands on
`sync.commands`; what comes out is read back from `task.updates`, `sync.status`,
`okr.updates`, `/metrics` and `boxsync box show`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from processors.settings import Settings
from tests.support import jira_bodies as jb
from tests.support.boxes import box_show
from tests.support.kafka import (
    WorkerProcess,
    publish,
    publish_keyed,
    read_to_end,
    read_topic,
)

pytestmark = pytest.mark.integration

OLGA = jb.user("557058:olga", "Olga Owner")
ALICE = jb.user("557058:alice", "Alice")
BOB = jb.user("557058:bob", "Bob")
MALLORY = jb.user("557058:mallory", "Mallory")  # no grant at all


def person(user: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "user", "id": user["accountId"], "name": user["displayName"],
            "source": "jira"}


def ids(settings: Settings, *names: str) -> list[str]:
    """Box ids unique to the test: the database (box state, memberships) outlives each test."""
    return [f"{settings.topic_prefix}{name}" for name in names]


def box(box_id: str, projects: list[str], *, status: str = "in_progress") -> dict[str, Any]:
    return {"box_id": box_id, "name": box_id.upper(), "box_type": "program",
            "scope_type": "own", "status": status, "archived": False,
            "scope": {"jira_projects": projects}, "scope_owner": person(OLGA),
            "admins": [OLGA["accountId"]]}


def grant(user: dict[str, Any], project: str) -> tuple[str, dict[str, Any]]:
    user_id = user["accountId"]
    return f"{user_id}|{project}", {"user_id": user_id, "project": project,
                                    "permissions": ["BROWSE_PROJECTS"]}


def command(command_id: str, kind: str, box_id: str, by: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": 1, "command_id": command_id, "type": kind, "box_id": box_id,
            "requested_by": person(by), "requested_at": "2026-11-28T10:00:00Z"}


def now_ms() -> int:
    return int(time.time() * 1000)


def next_window_ms(settings: Settings) -> int:
    """100 ms into the next window: changes a few hundred ms apart share one window."""
    interval_ms = settings.collapse_interval_seconds * 1000
    return (now_ms() // interval_ms + 1) * interval_ms + 100


def site_of(settings: Settings) -> str:
    return f"{settings.topic_prefix.rstrip('.')}.atlassian.net"


def _of_task(task_id: str) -> Callable[[dict[str, Any]], bool]:
    """Matches a record of one task (a closure per task, bound now, not at call time)."""
    return lambda record: record["task_id"] == task_id


def wait_for(settings: Settings, topic: str, match: Callable[[dict[str, Any]], bool],
             timeout: float = 30.0) -> dict[str, Any]:
    """The first record of the topic that matches, waiting for it to come."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in read_to_end(settings, topic):
            if match(record):
                return record
    raise AssertionError(f"nothing on {topic} matched within {timeout}s")


def summary_change(site: str, issue_id: str, key: str, author: dict[str, Any], text: str,
                   at_ms: int, changelog: int) -> dict[str, Any]:
    issue = jb.issue(site, issue_id, key, summary=text)
    return jb.updated(at_ms, author, issue, changelog, [jb.item("summary", text)])


def metric_samples(worker: WorkerProcess, name: str) -> dict[str, float]:
    status, body = worker.http("/metrics")
    assert status == 200
    samples = {}
    for line in body.decode().splitlines():
        if line.startswith(name + "{"):
            labels, _, value = line.rpartition(" ")
            samples[labels[len(name):]] = float(value)
    return samples




def test_filters_follow_reference_data_commands_and_restarts(
        settings: Settings, start_worker: Callable[..., WorkerProcess]) -> None:
    settings = settings.model_copy(update={"filters_enabled": True})
    site = site_of(settings)
    x = f"jira:{site}:100"
    ops, all_, web = ids(settings, "ops", "all", "web")
    publish_keyed(settings, "box.definitions", [
        (ops, box(ops, ["OPS"])), (all_, box(all_, ["OPS"])), (web, box(web, ["WEB"]))])
    publish_keyed(settings, "jira.permissions", [
        grant(ALICE, "OPS"), grant(BOB, "OPS"), grant(ALICE, "WEB"), grant(OLGA, "OPS")])
    worker = start_worker(settings)

    # Both permitted: one update to both boxes, by the last author.
    t = next_window_ms(settings)
    publish(settings, "jira.events", [
        summary_change(site, "100", "OPS-1", ALICE, "by alice", t, 1),
        summary_change(site, "100", "OPS-1", BOB, "by bob", t + 300, 2)])
    first = wait_for(settings, "task.updates", lambda u: u["task_id"] == x)
    assert (first["box_ids"], first["author"]["id"]) == ([all_, ops], BOB["accountId"])

    # A revoked permission (tombstone) takes effect within one interval: Bob's later change
    # gives the window neither its field nor its author; Mallory never had a grant.
    publish_keyed(settings, "jira.permissions", [(grant(BOB, "OPS")[0], None)])
    time.sleep(settings.collapse_interval_seconds + 0.5)
    t = now_ms()
    publish(settings, "jira.events", [
        summary_change(site, "100", "OPS-1", ALICE, "alice again", t, 3),
        summary_change(site, "100", "OPS-1", BOB, "bob denied", t + 200, 4),
        summary_change(site, "100", "OPS-1", MALLORY, "mallory denied", t + 400, 5)])
    second = wait_for(settings, "task.updates",
                      lambda u: u["task_id"] == x and u["update_id"] != first["update_id"])
    assert second["author"]["id"] == ALICE["accountId"]
    assert second["changes"]["summary"] == "alice again"
    assert second["collapsed"] == 1

    # A box closed mid-stream takes no update from the next window on; the other box does.
    publish_keyed(settings, "box.definitions", [(ops, box(ops, ["OPS"], status="closed"))])
    time.sleep(settings.collapse_interval_seconds + 0.5)
    publish(settings, "jira.events", [summary_change(site, "100", "OPS-1", ALICE, "closed?",
                                                     now_ms(), 6)])
    third = wait_for(settings, "task.updates", lambda u: u["changes"].get("summary") == "closed?")
    assert third["box_ids"] == [all_]

    # A project deleted in Jira flags the box whose scope names it ...
    publish(settings, "jira.events", [{
        "timestamp": now_ms(), "webhookEvent": "project_deleted",
        "project": {"self": f"https://{site}/rest/api/2/project/10001", "id": 10001,
                    "key": "WEB", "name": "Web"}}])
    flagged = wait_for(settings, "sync.status",
                       lambda s: s["state"] == "flagged" and s["box_id"] == web)
    assert (flagged["box_id"], flagged["reason"]) == (web, "corrupted_scope")
    time.sleep(1.5)  # the collapse reads box flags once a second
    publish(settings, "jira.events", [summary_change(site, "300", "WEB-1", ALICE, "hidden",
                                                     now_ms(), 7)])
    # ... its updates stop (counted) until a box admin clears the warning.
    deadline = time.monotonic() + 20
    while metric_samples(worker, "boxsync_updates_filtered_total").get(
            '{reason="corrupted_scope"}', 0) < 1:
        assert time.monotonic() < deadline, "the corrupted-scope update was not counted"
        time.sleep(0.5)
    publish_keyed(settings, "sync.commands", [
        (web, command(f"{web}-c1", "clear_box_warnings", web, ALICE)),
        (web, command(f"{web}-c2", "clear_box_warnings", web, OLGA))])
    refused = wait_for(settings, "sync.status", lambda s: s.get("command_id") == f"{web}-c1")
    assert (refused["state"], refused["reason"]) == ("refused", "forbidden")
    cleared = wait_for(settings, "sync.status", lambda s: s.get("command_id") == f"{web}-c2")
    assert cleared["state"] == "completed"
    time.sleep(1.5)
    publish(settings, "jira.events", [summary_change(site, "300", "WEB-1", ALICE, "visible",
                                                     now_ms(), 8)])
    fourth = wait_for(settings, "task.updates", lambda u: u["changes"].get("summary") == "visible")
    assert fourth["box_ids"] == [web]
    assert not [u for u in read_topic(settings, "task.updates")
                if u["changes"].get("summary") == "hidden"]

    filtered = metric_samples(worker, "boxsync_updates_filtered_total")
    assert filtered['{reason="permission_denied"}'] >= 2
    assert filtered['{reason="box_closed"}'] >= 1
    report = box_show(settings, web)
    assert report["sync_state"]["corrupted_scope"] is False
    assert [w["cleared_by"] for w in report["warnings"]] == [OLGA["accountId"]]
    assert report["member_count"] == 1

    # A restarted worker filters exactly as before (reference data read again from the
    # compacted topics, flags from PostgreSQL).
    worker.stop()
    start_worker(settings)
    publish(settings, "jira.events", [summary_change(site, "100", "OPS-1", ALICE, "restarted",
                                                     now_ms(), 9),
                                      summary_change(site, "100", "OPS-1", BOB, "still denied",
                                                     now_ms() + 100, 10)])
    fifth = wait_for(settings, "task.updates",
                     lambda u: u["changes"].get("summary") == "restarted")
    assert (fifth["box_ids"], fifth["author"]["id"]) == ([all_], ALICE["accountId"])


def test_status_changes_of_linked_tasks_report_key_result_progress(
        settings: Settings, start_worker: Callable[..., WorkerProcess]) -> None:
    settings = settings.model_copy(update={"filters_enabled": True})
    site = site_of(settings)
    x, y, w = (f"jira:{site}:{n}" for n in (100, 200, 300))
    [ops] = ids(settings, "ops")
    publish_keyed(settings, "box.definitions", [(ops, box(ops, ["OPS"]))])
    publish_keyed(settings, "jira.permissions", [grant(ALICE, "OPS")])
    # kr-auto links x directly and every task of box ops (x again, y, w): 3 tasks, not 4.
    publish_keyed(settings, "okr.links", [
        ("kr-auto", {"key_result_id": "kr-auto", "objective_id": "o-1", "mode": "auto",
                     "task_ids": [x], "box_ids": [ops]}),
        ("kr-manual", {"key_result_id": "kr-manual", "objective_id": "o-1", "mode": "manual",
                       "task_ids": [y], "box_ids": []})])
    start_worker(settings)
    t = now_ms()
    publish(settings, "jira.events", [
        jb.created(t, ALICE, jb.issue(site, "100", "OPS-1", status="To Do"), 1),
        jb.created(t, ALICE, jb.issue(site, "200", "OPS-2", status="To Do"), 2),
        jb.created(t, ALICE, jb.issue(site, "300", "OPS-3", status="To Do"), 3)])
    for task_id in (x, y, w):
        wait_for(settings, "task.updates", _of_task(task_id))
    time.sleep(1)
    done = jb.issue(site, "100", "OPS-1", status="Done")
    publish(settings, "jira.events", [
        jb.updated(now_ms(), ALICE, done, 4, [jb.item("status", "Done", "10001")])])
    progress = wait_for(settings, "okr.updates",
                        lambda p: p["key_result_id"] == "kr-auto" and p["done"] == 1)
    assert (progress["total"], progress["progress_pct"], progress["task_id"]) == (3, 33.33, x)
    assert all(p["total"] <= 3 for p in read_topic(settings, "okr.updates")
               if p["key_result_id"] == "kr-auto")
    manual = wait_for(settings, "okr.updates", lambda p: p["key_result_id"] == "kr-manual")
    assert (manual["progress_pct"], manual["done"], manual["task_id"]) == (None, None, y)
