"""Commands on `sync.commands` through a `boxsync worker`: handled once per id, each ending in a
status, flags and the Jira index gate applied, the audit log written (issue 5)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from processors.settings import Settings
from processors.store import db
from tests.support.kafka import WorkerProcess, publish_keyed, read_to_end

pytestmark = pytest.mark.integration

ADMIN = {"kind": "user", "id": "admin-1", "name": "Ada Admin", "source": "app"}


def box(box_id: str, scope_type: str = "own") -> dict[str, Any]:
    return {"box_id": box_id, "name": box_id, "box_type": "project", "scope_type": scope_type,
            "status": "in_progress", "scope": {"jira_projects": ["OPS"]},
            "admins": [ADMIN["id"]]}


def send(settings: Settings, command_id: str, kind: str, box_id: str | None,
         **params: Any) -> None:
    publish_keyed(settings, "sync.commands", [(box_id or "", {
        "schema_version": 1, "command_id": command_id, "type": kind, "box_id": box_id,
        "requested_by": ADMIN, "requested_at": "2026-11-28T10:00:00Z", "params": params})])


def statuses_of(settings: Settings, command_id: str, *, at_least: int = 1,
                until: Callable[[list[dict[str, Any]]], bool] | None = None,
                timeout: float = 30) -> list[dict[str, Any]]:
    """The command's statuses once there are `at_least` (and `until` holds), or at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        found = [s for s in read_to_end(settings, "sync.status")
                 if s.get("command_id") == command_id]
        done = len(found) >= at_least and (until is None or until(found))
        if done or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def test_commands_are_handled_once_flag_gate_and_audit(
        settings: Settings, database_url: str,
        start_worker: Callable[..., WorkerProcess]) -> None:
    own, portfolio = f"{settings.topic_prefix}own", f"{settings.topic_prefix}portfolio"
    unstorable = f"{settings.topic_prefix}nul"
    publish_keyed(settings, "box.definitions", [
        # PostgreSQL cannot store a NUL in jsonb: a dead letter, and the next records flow.
        (unstorable, {**box(unstorable), "name": "bad\u0000name"}),
        (own, box(own)), (portfolio, box(portfolio, "none"))])
    start_worker(settings)
    prefix = settings.topic_prefix

    # The same command id twice: one answer.
    send(settings, f"{prefix}all", "resync_all", None)
    send(settings, f"{prefix}all", "resync_all", None)
    [refused] = statuses_of(settings, f"{prefix}all", at_least=2, timeout=8)
    assert (refused["state"], refused["reason"]) == ("refused", "bulk_resync_not_allowed")

    # plugin_toggled flags own-scope boxes only, and runs nothing.
    send(settings, f"{prefix}toggle", "plugin_toggled", None)
    flagged = statuses_of(settings, f"{prefix}toggle",
                          until=lambda found: own in {s["box_id"] for s in found})
    assert own in {s["box_id"] for s in flagged if s["state"] == "flagged"}
    assert portfolio not in {s["box_id"] for s in flagged}

    # A corrupted Jira index refuses full syncs, unless forced (audited).
    send(settings, f"{prefix}index", "jira_index_status", None, corrupted=True)
    assert statuses_of(settings, f"{prefix}index")[0]["state"] == "completed"
    send(settings, f"{prefix}open", "open_box", own)
    opened = statuses_of(settings, f"{prefix}open")
    assert (opened[0]["state"], opened[0]["reason"]) == ("refused", "jira_index_corrupted")
    send(settings, f"{prefix}forced", "open_box", own, force=True)
    forced = statuses_of(settings, f"{prefix}forced")
    assert forced[0]["state"] == "queued" and forced[0]["run_id"]
    send(settings, f"{prefix}none", "open_box", portfolio)
    none = statuses_of(settings, f"{prefix}none")
    assert none[0]["reason"] == "not_available_for_non_scope_box"
    send(settings, f"{prefix}index-ok", "jira_index_status", None, corrupted=False)
    statuses_of(settings, f"{prefix}index-ok")

    with db.connect(database_url, autocommit=True) as conn:
        audit = {row[0]: row[1:] for row in conn.execute(
            """SELECT command_id, outcome, reason, force FROM command_log
                WHERE command_id LIKE %s""", (f"{prefix}%",)).fetchall()}
        visit = conn.execute("SELECT last_visit_at FROM box_state WHERE box_id = %s",
                             (own,)).fetchone()
    assert audit[f"{prefix}all"] == ("refused", "bulk_resync_not_allowed", False)
    assert audit[f"{prefix}open"] == ("refused", "jira_index_corrupted", False)
    assert audit[f"{prefix}forced"] == ("run_full", None, True)
    assert visit is not None and visit[0] is not None  # open_box records the visit
    [letter] = read_to_end(settings, "sync.deadletter")
    assert (letter["key"], letter["error"]["type"]) == (unstorable, "invalid_reference")
