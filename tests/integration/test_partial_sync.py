"""Jira events → ingest → collapse → task.updates and the tasks cache, on the real broker and
database, through a `boxsync worker` process."""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable
from typing import Any

import orjson
import psutil
import pytest

from processors.settings import Settings
from processors.stack.postgres import resolve_database_url
from processors.store import db, tasks
from schemas.events import DeadLetter, TaskUpdate
from tests.support import jira_bodies as jb
from tests.support.kafka import WorkerProcess, publish, read_topic

pytestmark = pytest.mark.integration

ALICE = jb.user("557058:alice", "Alice")
BOB = jb.user("557058:bob", "Bob")
CAROL = jb.user("557058:carol", "Carol")
AUTOMATION = jb.user("557058:f58131cb-b67d-43c7-b30d-6b58d40bd077", "Automation for Jira",
                     account_type="app")


def window_base_ms(interval: float, seconds_ago: float = 120) -> int:
    """Start of a window a while back: its windows close as soon as the worker goes quiet."""
    return int(math.floor((time.time() - seconds_ago) / interval) * interval * 1000)


def site_of(settings: Settings) -> str:
    return f"{settings.topic_prefix.rstrip('.')}.atlassian.net"


def by_task(updates: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for update in updates:
        grouped.setdefault(update["task_id"], []).append(update)
    return grouped


def test_changes_collapse_to_one_update_per_task_and_window(
        settings: Settings, database_url: str,
        start_worker: Callable[..., WorkerProcess]) -> None:
    worker = start_worker(settings)
    site, base = site_of(settings), window_base_ms(settings.collapse_interval_seconds)
    x = jb.issue(site, "100", "OPS-1", summary="Plan", status="In Progress")
    y = jb.issue(site, "200", "OPS-2", summary="Scratch")
    second_window = base + settings.collapse_interval_seconds * 1000
    bodies = [
        # Arrival order differs from source order: the result must not depend on it.
        jb.updated(base + 900, CAROL, {**x, "fields": {**x["fields"], "summary": "Plan v2"}},
                   3, [jb.item("summary", "Plan v2")]),
        jb.updated(base + 100, ALICE, x, 1, [jb.item("status", "In Progress", "3")]),
        jb.updated(base + 500, BOB, {**x, "fields": {**x["fields"], "priority": {"name": "High"}}},
                   2, [jb.item("priority", "High", "2")]),
        jb.updated(base + 1000, None, x, 4, [jb.item("labels", "ops")]),  # a system change
        jb.created(base + 200, BOB, y, 10),
        jb.deleted(base + 700, BOB, y),
        jb.updated(second_window + 100, ALICE,
                   {**x, "fields": {**x["fields"], "summary": "Plan v3"}}, 5,
                   [jb.item("summary", "Plan v3")]),
    ]
    publish(settings, "jira.events", bodies)

    updates = read_topic(settings, "task.updates", expect=3, timeout=40, settle=3)
    grouped = by_task(updates)
    x_id, y_id = f"jira:{site}:100", f"jira:{site}:200"
    assert sorted(grouped) == [x_id, y_id]
    assert len(updates) == 3, updates
    for update in updates:
        TaskUpdate.model_validate(update)

    first, second = sorted(grouped[x_id], key=lambda u: u["window_start"])
    assert first["op"] == "upsert" and first["collapsed"] == 4
    assert first["changes"]["summary"] == "Plan v2"
    assert first["changes"]["priority"] == "High"
    assert first["changes"]["status_category"] == "indeterminate"
    # The last change named nobody: the last human author (Carol) keeps the window.
    assert first["author"]["id"] == "557058:carol"
    assert second["changes"] == {"summary": "Plan v3"} and second["author"]["id"] == "557058:alice"
    assert first["update_id"] != second["update_id"]

    (gone,) = grouped[y_id]
    assert gone["op"] == "delete" and gone["collapsed"] == 2

    with db.connect(database_url, autocommit=True) as conn:
        row = tasks.get_task(conn, x_id)
        deleted_row = tasks.get_task(conn, y_id)
    assert row is not None and row["fields"]["summary"] == "Plan v3"
    assert row["last_author"]["id"] == "557058:alice"
    assert deleted_row is not None and deleted_row["deleted"] is True

    status, body = worker.http("/metrics")
    assert status == 200
    assert b'boxsync_task_updates_emitted_total{op="upsert",sync_type="partial"} 2.0' in body
    assert b'boxsync_events_consumed_total{event="jira:issue_updated",source="jira"} 5.0' in body


def test_bad_body_is_dead_lettered_and_the_next_body_still_flows(
        settings: Settings, start_worker: Callable[..., WorkerProcess]) -> None:
    start_worker(settings)
    site, base = site_of(settings), window_base_ms(settings.collapse_interval_seconds)
    broken = b'{"webhookEvent": "jira:issue_updated", "issue": {"id": '
    good = jb.updated(base + 100, ALICE, jb.issue(site, "300", "OPS-3"), 1,
                      [jb.item("summary", "A task")])
    publish(settings, "jira.events", [broken, good])

    letters = read_topic(settings, "sync.deadletter", expect=1, timeout=30)
    updates = read_topic(settings, "task.updates", expect=1, timeout=30)
    assert len(letters) == 1
    letter = DeadLetter.model_validate(letters[0])
    assert letter.error.type == "invalid_json"
    assert letter.value is not None and base64.b64decode(letter.value) == broken
    assert letter.source_topic == f"{settings.topic_prefix}jira.events"
    assert [u["task_id"] for u in updates] == [f"jira:{site}:300"]


def test_kill_9_with_a_window_open_emits_it_once_after_restart(
        own_topics: Callable[..., Settings],
        start_worker: Callable[..., WorkerProcess]) -> None:
    """One partition, interval 10 s. Task A's window opens first; task B's changes come after
    it in the partition but in the previous window, which closes (and is emitted) while A's is
    still open. The worker is killed then: the committed offset stays at A's first change, so
    the restarted worker re-reads B's changes too, and must not emit B again."""
    settings = own_topics(collapse_interval_seconds=10, grace_seconds=1.0, partitions=1,
                          filters_enabled=False)
    first = start_worker(settings)
    site = site_of(settings)
    start = window_base_ms(10, seconds_ago=300)  # window [S, S+10) for B, [S+10, S+20) for A
    a = jb.issue(site, "400", "OPS-4", summary="A", status="In Progress")
    b = jb.issue(site, "500", "OPS-5", summary="B")
    publish(settings, "jira.events", [
        jb.updated(start + 10_200, ALICE, a, 1, [jb.item("status", "In Progress", "3")]),
        jb.updated(start + 7_000, BOB, b, 2, [jb.item("summary", "B")]),
        jb.updated(start + 8_000, CAROL, b, 3, [jb.item("priority", "Medium", "3")]),
        jb.updated(start + 11_500, BOB, {**a, "fields": {**a["fields"], "summary": "A v2"}}, 4,
                   [jb.item("summary", "A v2")]),
    ])
    emitted = read_topic(settings, "task.updates", expect=1, timeout=20)
    assert [u["task_id"] for u in emitted] == [f"jira:{site}:500"], "B first, A still open"
    assert first.process is not None
    stage_processes = psutil.Process(first.process.pid).children()
    assert len(stage_processes) >= 2
    first.kill9()
    # The stage processes die with the worker: no orphan keeps consuming.
    _, alive = psutil.wait_procs(stage_processes, timeout=10)
    assert not alive, alive

    start_worker(settings)
    updates = read_topic(settings, "task.updates", expect=2, timeout=60, settle=4)
    ids = [u["update_id"] for u in updates]
    assert len(ids) == len(set(ids)) == 2, updates
    a_update = next(u for u in updates if u["task_id"] == f"jira:{site}:400")
    assert a_update["collapsed"] == 2
    assert a_update["changes"]["summary"] == "A v2"
    assert a_update["changes"]["status"] == "In Progress"
    assert a_update["author"]["id"] == "557058:bob"
    with db.connect(resolve_database_url(settings), autocommit=True) as conn:
        row = tasks.get_task(conn, f"jira:{site}:400")
    assert row is not None and row["fields"]["summary"] == "A v2"
    assert orjson.loads(orjson.dumps(row["last_author"]))["id"] == "557058:bob"


def test_a_redelivery_is_applied_once_also_across_a_restart(
        settings: Settings, start_worker: Callable[..., WorkerProcess]) -> None:
    """Jira retries a delivery (same X-Atlassian-Webhook-Identifier) for up to 30 minutes."""
    site, base = site_of(settings), window_base_ms(settings.collapse_interval_seconds)
    body = jb.updated(base + 100, ALICE, jb.issue(site, "600", "OPS-6"), 1,
                      [jb.item("summary", "A task")])
    delivery = [("X-Atlassian-Webhook-Identifier", b"delivery-600-1")]
    first = start_worker(settings)
    publish(settings, "jira.events", [body], headers=delivery)
    assert len(read_topic(settings, "task.updates", expect=1, timeout=30)) == 1
    assert first.stop() == 0

    second = start_worker(settings)
    publish(settings, "jira.events", [body], headers=delivery)  # the retry, after a restart
    updates = read_topic(settings, "task.updates", expect=2, timeout=12)
    assert len(updates) == 1, updates
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        _, metrics = second.http("/metrics")
        if b'boxsync_events_duplicate_total{source="jira"} 1.0' in metrics:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the retry was not counted as a duplicate")


def test_a_killed_stage_process_is_restarted_and_nothing_is_lost_or_doubled(
        settings: Settings, start_worker: Callable[..., WorkerProcess]) -> None:
    """The supervisor restarts a stage process that died; the restarted one fences its
    predecessor's open transaction (same transactional id) and re-reads what was not
    committed."""
    worker = start_worker(settings)
    assert worker.process is not None
    site, base = site_of(settings), window_base_ms(settings.collapse_interval_seconds)
    publish(settings, "jira.events", [jb.updated(base + n, ALICE, jb.issue(site, str(n), "A-1"),
                                                 n, [jb.item("summary", "A task")])
                                      for n in range(1, 6)])
    assert len(read_topic(settings, "task.updates", expect=5, timeout=30)) == 5

    for child in psutil.Process(worker.process.pid).children():
        if child.name().startswith("bs-collapse"):
            child.kill()
    publish(settings, "jira.events", [jb.updated(base + n, BOB, jb.issue(site, str(n), "A-1"),
                                                 n, [jb.item("summary", "A task")])
                                      for n in range(6, 11)])
    updates = read_topic(settings, "task.updates", expect=10, timeout=60, settle=3)
    ids = [u["update_id"] for u in updates]
    assert len(ids) == len(set(ids)) == 10, updates
    assert {u["task_id"] for u in updates} == {f"jira:{site}:{n}" for n in range(1, 11)}
    deadline = time.monotonic() + 20
    while worker.http("/readyz")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert worker.http("/readyz")[0] == 200


def test_stages_split_over_two_workers_still_make_one_update(
        settings: Settings, start_worker: Callable[..., WorkerProcess]) -> None:
    """BOXSYNC_WORKER_STAGES: an ingest-only worker and a worker with the other stages (as
    on two hosts) share the work through the topics; each runs only its own processes."""
    ingest = start_worker(settings, BOXSYNC_WORKER_STAGES="ingest")
    rest = start_worker(settings, BOXSYNC_WORKER_STAGES="collapse,boxes,sync",
                        BOXSYNC_INSTANCE_ID=f"{settings.topic_prefix}rest")
    names = {}
    for worker in (ingest, rest):
        assert worker.process is not None
        names[worker] = sorted(child.name() for child in
                               psutil.Process(worker.process.pid).children()
                               if child.name().startswith("bs-"))  # not the resource tracker
    assert names[ingest] == ["bs-ingest", "bs-ingest.2"]
    assert names[rest] == ["bs-boxes", "bs-collapse", "bs-collapse.2", "bs-sync"]

    site, base = site_of(settings), window_base_ms(settings.collapse_interval_seconds)
    issue = jb.issue(site, "700", "OPS-7", summary="Split")
    publish(settings, "jira.events", [
        jb.updated(base + 100, ALICE, issue, 1, [jb.item("summary", "Split")]),
        jb.updated(base + 300, BOB, issue, 2, [jb.item("priority", "High", "2")]),
    ])
    updates = read_topic(settings, "task.updates", expect=1, timeout=30, settle=2)
    assert len(updates) == 1, updates
    assert updates[0]["collapsed"] == 2 and updates[0]["author"]["id"] == "557058:bob"
