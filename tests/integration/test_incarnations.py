"""Reference topics deleted and created again (issue 12 §1), on the real broker and database.

Offsets start again at 0 in a re-created topic. Before incarnations were kept, the boxes
stage compared the new box definition's offset 0 with the stored one's and kept the old
definition: a later full sync ran on the old scope. Here a box, a permission and an OKR link
change across a re-creation, and the next full sync and the next status change must follow
the new records, whether the worker was stopped during the re-creation or running.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from processors.settings import Settings
from tests.support import jira_bodies as jb
from tests.support.boxes import (
    OLGA,
    box,
    grant,
    issues,
    run_full_sync,
    site_of,
    stored,
    sync_env,
    wait_until,
)
from tests.support.fake_sources import FakeSources
from tests.support.kafka import WorkerProcess, publish, publish_keyed, read_to_end, recreate_topics

pytestmark = pytest.mark.integration

REFERENCE = ("box.definitions", "jira.permissions", "okr.links")


@pytest.fixture
def fake() -> Iterator[FakeSources]:
    with FakeSources() as server:
        yield server


def link(task_ids: list[str]) -> tuple[str, dict[str, Any]]:
    return ("kr-1", {"key_result_id": "kr-1", "objective_id": "o-1", "mode": "auto",
                     "task_ids": task_ids, "box_ids": []})


def publish_reference(settings: Settings, box_id: str, projects: list[str],
                      granted: list[str], linked: list[str]) -> None:
    publish_keyed(settings, "box.definitions", [(box_id, box(box_id, projects))])
    publish_keyed(settings, "jira.permissions", [grant(p) for p in granted])
    publish_keyed(settings, "okr.links", [link(linked)])


def test_reference_topics_recreated_while_stopped_are_rebuilt_and_used(
        settings: Settings, database_url: str, fake: FakeSources,
        start_worker: Callable[..., WorkerProcess]) -> None:
    settings = settings.model_copy(update={"filters_enabled": True})
    site, box_id = site_of(settings), f"{settings.topic_prefix}program"
    ops = [f"jira:{site}:{n}" for n in (1, 2, 3)]
    fake.issues = issues(site)
    env = sync_env(fake)
    # Before: the box holds SEC; Olga may browse OPS and SEC; kr-1 links OPS-1.
    publish_reference(settings, box_id, ["SEC"], ["OPS", "SEC"], [ops[0]])
    first = start_worker(settings, **env)
    wait_until(lambda: stored(database_url, "box.definitions", box_id) is not None, 30,
               "the first box definition stored")
    assert run_full_sync(settings, box_id, f"{box_id}-before") == {
        f"jira:{site}:10001", f"jira:{site}:10002"}
    first.stop()

    # Re-created: the box holds OPS and SEC, Olga may browse OPS only (SEC revoked by its
    # absence), kr-1 links OPS-2. Every new record is at offset 0, as the old ones were.
    recreate_topics(settings, *REFERENCE)
    publish_reference(settings, box_id, ["OPS", "SEC"], ["OPS"], [ops[1]])
    worker = start_worker(settings, **env)

    _, body = worker.http("/readyz")
    details = orjson.loads(body)["details"]
    assert {t["topic"] for t in details["topics_recreated_since_last_start"]} >= set(REFERENCE)
    assert "reference topic re-created" in worker.log_path.read_text()
    assert stored(database_url, "box.definitions", box_id)["scope"]["jira_projects"] == [
        "OPS", "SEC"]
    assert stored(database_url, "jira.permissions", f"{OLGA['id']}|SEC") is None

    # The full sync runs on the new scope and the new permissions: OPS, not SEC.
    assert run_full_sync(settings, box_id, f"{box_id}-after") == set(ops)

    # The new link counts: OPS-2 done reports kr-1's progress; OPS-1 is no longer linked.
    time.sleep(1)
    done = jb.issue(site, "2", "OPS-2", status="Done")
    publish(settings, "jira.events", [jb.updated(int(time.time() * 1000),
                                                 jb.user(OLGA["id"], "Olga Owner"), done, 7,
                                                 [jb.item("status", "Done", "10001")])])
    deadline = time.monotonic() + 30
    progress: list[dict[str, Any]] = []
    while not progress and time.monotonic() < deadline:
        progress = [p for p in read_to_end(settings, "okr.updates")
                    if p["key_result_id"] == "kr-1"]
        time.sleep(0.5)
    assert progress and {p["task_id"] for p in progress} == {ops[1]}, progress
    assert (progress[-1]["done"], progress[-1]["total"]) == (1, 1)


def test_a_box_topic_recreated_while_running_is_rebuilt(
        settings: Settings, database_url: str,
        start_worker: Callable[..., WorkerProcess]) -> None:
    box_id = f"{settings.topic_prefix}program"
    other = f"{settings.topic_prefix}gone"
    publish_keyed(settings, "box.definitions", [(box_id, box(box_id, ["OPS"])),
                                                (other, box(other, ["ENG"]))])
    worker = start_worker(settings)
    wait_until(lambda: stored(database_url, "box.definitions", other) is not None, 30,
               "the first definitions stored")
    recreate_topics(settings, "box.definitions")
    publish_keyed(settings, "box.definitions", [(box_id, box(box_id, ["SEC"]))])
    # Noticed within the stage's incarnation check (15 s), then rebuilt: the new scope, and
    # the box the new topic does not hold is gone.
    wait_until(lambda: (stored(database_url, "box.definitions", box_id) or {}).get(
        "scope", {}).get("jira_projects") == ["SEC"], 60, "the new scope stored")
    assert stored(database_url, "box.definitions", other) is None
    assert "topic re-created while the stage ran" in worker.log_path.read_text()
