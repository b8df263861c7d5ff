"""Full and incremental sync through a `boxsync worker`, against a local HTTP server that
answers like Jira Cloud (tests.support.fake_sources), on the real broker and database
(issue 5)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from processors.settings import Settings
from processors.store import db
from tests.support import jira_bodies as jb
from tests.support.fake_sources import FakeSources, jira_issue
from tests.support.kafka import WorkerProcess, publish, publish_keyed, read_to_end, read_topic

pytestmark = pytest.mark.integration

OLGA = {"kind": "user", "id": "557058:olga", "name": "Olga Owner", "source": "jira"}
OLD = "2025-03-01T10:00:00.000+0000"


@pytest.fixture
def fake() -> Iterator[FakeSources]:
    with FakeSources() as server:
        yield server


def site_of(settings: Settings) -> str:
    """A Jira site per test: task ids (and the cache rows) never meet another test's."""
    return f"{settings.topic_prefix.rstrip('.')}.atlassian.net"


def issue(site: str, number: int, project: str = "OPS", updated: str = OLD, **fields: Any
          ) -> dict[str, Any]:
    issue_id = number if project == "OPS" else 10_000 + number
    return jira_issue(issue_id, f"{project}-{number}", site=site, updated=updated,
                      summary=fields.pop("summary", f"Task {number}"),
                      status={"name": "To Do", "statusCategory": {"key": "new"}}, **fields)


def sync_env(fake: FakeSources) -> dict[str, str]:
    return {"BOXSYNC_JIRA_BASE_URL": fake.url, "BOXSYNC_JIRA_EMAIL": fake.jira_email,
            "BOXSYNC_JIRA_API_TOKEN": fake.jira_api_token}


def define_box(settings: Settings, box_id: str, projects: list[str]) -> None:
    publish_keyed(settings, "box.definitions", [(box_id, {
        "box_id": box_id, "name": "Program", "box_type": "program", "scope_type": "own",
        "status": "in_progress", "scope": {"jira_projects": projects}, "scope_owner": OLGA,
        "admins": [OLGA["id"]]})])
    publish_keyed(settings, "jira.permissions", [(f"{OLGA['id']}|OPS", {
        "user_id": OLGA["id"], "project": "OPS", "permissions": ["BROWSE_PROJECTS"]})])


def command(settings: Settings, command_id: str, kind: str, box_id: str | None) -> None:
    publish_keyed(settings, "sync.commands", [(box_id or "", {
        "schema_version": 1, "command_id": command_id, "type": kind, "box_id": box_id,
        "requested_by": OLGA, "requested_at": "2026-11-28T10:00:00Z"})])


def statuses_until(settings: Settings, command_id: str, states: set[str],
                   timeout: float = 60) -> list[dict[str, Any]]:
    """The statuses of a command and its run, in order, once one is in `states`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [s for s in read_to_end(settings, "sync.status")
                 if s.get("command_id") == command_id]
        if any(s["state"] in states for s in found):
            return found
        time.sleep(0.5)
    raise AssertionError(f"command {command_id} reached none of {states} in {timeout}s")


def box_state(database_url: str, box_id: str) -> tuple[bool, Any]:
    with db.connect(database_url, autocommit=True) as conn:
        row = conn.execute("""SELECT waiting_full_sync, last_full_sync_at FROM box_state
                               WHERE box_id = %s""", (box_id,)).fetchone()
    assert row is not None
    return row[0], row[1]


def test_full_sync_pages_through_failures_keeps_partial_changes_then_incremental(
        settings: Settings, database_url: str, fake: FakeSources,
        start_worker: Callable[..., WorkerProcess]) -> None:
    box_id, site = f"{settings.topic_prefix}program", site_of(settings)
    # 250 OPS issues (3 pages of 100) and 5 in SEC, which the scope owner may not browse.
    fake.issues = [issue(site, n) for n in range(1, 251)] + [
        issue(site, n, "SEC") for n in range(1, 6)]
    fake.fail(2, 429, headers={"Retry-After": "1"})
    fake.fail(3, 500)
    fake.stall(5, 3.0)  # page 2 answers late: progress is reported, a partial change lands
    # The box held a task the source no longer has: it must be told to drop it.
    gone = f"jira:{site}:999"
    with db.connect(database_url, autocommit=True) as conn:
        conn.execute("""INSERT INTO tasks (task_id, source, project, box_ids)
                        VALUES (%s, 'jira', 'OPS', ARRAY[%s])""", (gone, box_id))
    define_box(settings, box_id, ["OPS", "SEC"])
    start_worker(settings, **sync_env(fake))
    command(settings, f"{box_id}-full", "resync_box", box_id)

    # While page 2 stalls, Olga changes OPS-1 (already written from page 1) in Jira.
    time.sleep(2.0)
    publish(settings, "jira.events", [jb.updated(
        int(time.time() * 1000), jb.user(OLGA["id"], "Olga Owner"),
        jb.issue(site, "1", "OPS-1", summary="changed during the run"), 1,
        [jb.item("summary", "changed during the run")])])

    statuses = statuses_until(settings, f"{box_id}-full", {"completed", "failed"})
    assert statuses[0]["state"] == "queued"
    assert statuses[-1]["state"] == "completed", statuses[-1]
    running = [s for s in statuses if s["state"] == "running"]
    assert running and all(s["read_only"] for s in running)
    assert any(s["processed"] > 0 for s in running), "no progress while the run was slow"
    processed = [s["processed"] for s in running]
    assert processed == sorted(processed)
    assert statuses[-1]["read_only"] is False
    assert statuses[-1]["processed"] == 255

    updates = read_topic(settings, "task.updates", timeout=10, settle=1.0)
    full = [u for u in updates if u["sync_type"] == "full" and u["box_ids"] == [box_id]]
    assert len({u["task_id"] for u in full}) == 250  # SEC is not the scope owner's to see
    assert all(u["author"]["id"] == OLGA["id"] for u in full)
    assert [u["task_id"] for u in updates if u["left_box_ids"] == [box_id]] == [gone]
    # No change is lost: the last word on OPS-1 is the partial change, not the older read.
    ops1 = [u for u in updates
            if u["task_id"] == f"jira:{site}:1" and "summary" in u["changes"]]
    assert ops1[-1]["changes"]["summary"] == "changed during the run"
    waiting, last_full = box_state(database_url, box_id)
    assert (waiting, last_full is not None) == (False, True)

    # Incremental: only the two issues whose `updated` moved are synced.
    edited = "2026-11-28T09:00:00.000+0000"
    fake.issues[9] = issue(site, 10, updated=edited, summary="ten, edited")
    fake.issues[19] = issue(site, 20, updated=edited, summary="20, edited")
    command(settings, f"{box_id}-incr", "incremental_sync", None)
    statuses = statuses_until(settings, f"{box_id}-incr", {"completed", "failed"})
    assert statuses[-1]["state"] == "completed", statuses[-1]
    incremental = {u["task_id"]: u["changes"]["summary"]
                   for u in read_topic(settings, "task.updates", timeout=10, settle=1.0)
                   if u["sync_type"] == "incremental" and u["box_ids"] == [box_id]}
    # OPS-1's cached time is the partial change's, not the source's: it differs too, and the
    # merge keeps the newer summary.
    assert incremental == {f"jira:{site}:10": "ten, edited", f"jira:{site}:20": "20, edited",
                           f"jira:{site}:1": "changed during the run"}


def test_a_worker_killed_mid_run_leaves_no_box_read_only(
        settings: Settings, database_url: str, fake: FakeSources,
        start_worker: Callable[..., WorkerProcess]) -> None:
    box_id = f"{settings.topic_prefix}program"
    fake.issues = [issue(site_of(settings), n) for n in range(1, 3001)]
    for number in range(2, 32):
        fake.stall(number, 2.0)  # 30 slow pages: the run is surely in flight when killed
    define_box(settings, box_id, ["OPS"])
    worker = start_worker(settings, **sync_env(fake))
    command(settings, f"{box_id}-full", "resync_box", box_id)
    statuses_until(settings, f"{box_id}-full", {"running"})
    worker.kill9()

    start_worker(settings, **sync_env(fake))
    statuses = statuses_until(settings, f"{box_id}-full", {"failed"})
    failed = statuses[-1]
    assert (failed["reason"], failed["read_only"]) == ("interrupted", False)
    waiting, _ = box_state(database_url, box_id)
    assert waiting is True  # flagged: the next open_box runs a new full sync


def test_a_second_scope_save_restarts_the_running_full_sync(
        settings: Settings, database_url: str, fake: FakeSources,
        start_worker: Callable[..., WorkerProcess]) -> None:
    box_id = f"{settings.topic_prefix}program"
    fake.issues = [issue(site_of(settings), n) for n in range(1, 301)]
    for number in range(2, 5):
        fake.stall(number, 5.0)  # the first run's pages are slow
    define_box(settings, box_id, ["OPS"])
    start_worker(settings, **sync_env(fake))
    command(settings, f"{box_id}-save-1", "scope_saved", box_id)
    statuses_until(settings, f"{box_id}-save-1", {"running"})
    command(settings, f"{box_id}-save-2", "scope_saved", box_id)

    first = statuses_until(settings, f"{box_id}-save-1", {"failed", "completed"})
    assert (first[-1]["state"], first[-1]["reason"]) == ("failed", "superseded")
    second = statuses_until(settings, f"{box_id}-save-2", {"failed", "completed"})
    assert second[-1]["state"] == "completed", second[-1]
    assert second[-1]["processed"] == 300
    # Background runs are authored by the scope owner.
    updates = [u for u in read_topic(settings, "task.updates", timeout=10, settle=1.0)
               if u["sync_type"] == "full"]
    assert updates and all(u["author"]["id"] == OLGA["id"] for u in updates)
