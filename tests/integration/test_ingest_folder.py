"""`boxsync publish` of folders of mixed good and bad bodies, through a real worker: exactly
one change per good body, one dead letter per bad one, and counted pass-overs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from processors.settings import Settings
from schemas.events import ChangeEvent, DeadLetter
from tests.support import jira_bodies as jb
from tests.support.kafka import ROOT, WorkerProcess, read_topic, worker_env

pytestmark = pytest.mark.integration

ALICE = jb.user("557058:alice", "Alice")
NOW_MS = int(time.time() * 1000) - 60_000


def trello_body(action_id: str, action_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"action": {"id": action_id, "idMemberCreator": "5a1b2c3d4e5f60718293a4b5",
                       "type": action_type, "date": "2026-11-28T10:00:01.250Z",
                       "memberCreator": {"id": "5a1b2c3d4e5f60718293a4b5", "username": "ada",
                                         "fullName": "Ada L"},
                       "data": {"board": {"id": "6a6b6c6d6e6f707172737475", "name": "Ops",
                                          "shortLink": "bRd1"}, **data}},
            "model": {"id": "6a6b6c6d6e6f707172737475", "name": "Ops"}}


def write(folder: Path, name: str, body: dict[str, Any] | bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(body if isinstance(body, bytes) else json.dumps(body).encode())


def boxsync_publish(settings: Settings, topic: str, folder: Path) -> str:
    env = {**os.environ, **worker_env(settings)}
    result = subprocess.run([sys.executable, "-m", "processors.cli.main", "publish",
                             "--topic", topic, str(folder)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_mixed_folders_give_one_change_per_good_body_and_one_dead_letter_per_bad_one(
        settings: Settings, tmp_path: Path, start_worker: Callable[..., WorkerProcess]) -> None:
    site = f"{settings.topic_prefix.rstrip('.')}.atlassian.net"
    jira, trello = tmp_path / "jira", tmp_path / "trello"
    issue = jb.issue(site, "700", "OPS-7")
    write(jira, "01-created.json", jb.created(NOW_MS, ALICE, issue, 1))
    write(jira, "02-updated.json", jb.updated(NOW_MS + 10, ALICE, issue, 2,
                                              [jb.item("summary", "A task")]))
    write(jira, "03-comment.json", {"timestamp": NOW_MS + 20, "webhookEvent": "comment_created",
                                    "issue": {"id": "700", "self": issue["self"], "key": "OPS-7"},
                                    "comment": {"id": "1", "author": ALICE,
                                                "self": issue["self"] + "/comment/1"}})
    write(jira, "04-project.json", {"timestamp": NOW_MS, "webhookEvent": "project_archived",
                                    "project": {"id": 10000, "key": "OPS"}})
    write(jira, "05-broken.json", b'{"webhookEvent": "jira:issue_updated", "issue": ')
    write(jira, "06-no-id.json", {"timestamp": NOW_MS, "webhookEvent": "jira:issue_updated",
                                  "issue": {"self": issue["self"], "key": "OPS-7"}})
    write(jira, "07-string-time.json", {**jb.created(NOW_MS, ALICE, issue, 3),
                                        "timestamp": "yesterday"})
    card = {"id": "5f5f5f5f5f5f5f5f5f5f5f5f", "name": "Card", "idShort": 4, "shortLink": "cRd1"}
    write(trello, "01-create.json", trello_body("6100000000000000000000a1", "createCard",
                                                {"card": card, "list": {"id": "l1",
                                                                        "name": "To do"}}))
    write(trello, "02-archive.json", trello_body(
        "6100000000000000000000a2", "updateCard",
        {"card": {**card, "closed": True}, "old": {"closed": False}}))
    write(trello, "03-label.json", trello_body("6100000000000000000000a3", "addLabelToCard",
                                               {"card": card}))
    write(trello, "04-no-card.json", trello_body("6100000000000000000000a4", "updateCard",
                                                 {"old": {"name": "x"}}))

    worker = start_worker(settings)
    assert "published 7 records" in boxsync_publish(settings, "jira.events", jira)
    assert "published 4 records" in boxsync_publish(settings, "trello.events", trello)

    changes = read_topic(settings, "sync.changes", expect=5, timeout=30, settle=3)
    letters = read_topic(settings, "sync.deadletter", expect=4, timeout=30, settle=1)
    assert len(changes) == 5, changes  # 3 Jira + 2 Trello
    assert len(letters) == 4, letters
    for change in changes:
        ChangeEvent.model_validate(change)
    reasons = sorted(DeadLetter.model_validate(letter).error.type for letter in letters)
    assert reasons == ["invalid_json", "invalid_timestamp", "missing_card_id",
                       "missing_issue_id"]
    assert {c["task_id"] for c in changes} == {f"jira:{site}:700",
                                               "trello:5f5f5f5f5f5f5f5f5f5f5f5f"}

    deadline = time.monotonic() + 15
    references = read_topic(settings, "sync.reference", expect=1, timeout=15, settle=1)
    assert [(r["upstream_event"], r["project"]) for r in references] == [
        ("project_archived", "OPS")]
    expected = [b'boxsync_events_consumed_total{event="project_archived",source="jira"} 1.0',
                b'boxsync_events_passed_over_total{reason="unhandled_event",source="trello"} 1.0',
                b'boxsync_events_dead_lettered_total{reason="invalid_json",source="jira"} 1.0']
    while time.monotonic() < deadline:
        _, metrics = worker.http("/metrics")
        if all(line in metrics for line in expected):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(metrics.decode())


def test_an_issue_link_without_a_site_takes_the_one_cached_site_of_its_issue(
        settings: Settings, start_worker: Callable[..., WorkerProcess]) -> None:
    """Contract §2: issue-link bodies carry numeric ids and no self URL; the site comes from
    the app cache when exactly one known site has that issue id."""
    from tests.support.kafka import publish

    site = f"{settings.topic_prefix.rstrip('.')}.atlassian.net"
    # An issue id no other test or run has cached: with two cached sites it is ambiguous.
    issue_id = str(int(time.time() * 1000) % 10**12)
    start_worker(settings)
    publish(settings, "jira.events", [jb.created(NOW_MS, ALICE, jb.issue(site, issue_id, "OPS-8"),
                                                 1)])
    assert len(read_topic(settings, "task.updates", expect=1, timeout=30)) == 1  # now cached
    link = {"timestamp": NOW_MS + 5, "webhookEvent": "issuelink_created",
            "issueLink": {"id": 1, "sourceIssueId": int(issue_id), "destinationIssueId": 1}}
    unknown = {**link, "issueLink": {"id": 2, "sourceIssueId": 987654, "destinationIssueId": 1}}
    publish(settings, "jira.events", [link, unknown])
    changes = read_topic(settings, "sync.changes", expect=2, timeout=30, settle=2)
    assert [c["task_id"] for c in changes] == [f"jira:{site}:{issue_id}"] * 2
    assert changes[1]["upstream_event"] == "issuelink_created"
    letters = read_topic(settings, "sync.deadletter", expect=1, timeout=15)
    assert [letter["error"]["type"] for letter in letters] == ["unknown_site"]
