"""The `tasks` cache on the real PostgreSQL: version-guarded, idempotent upserts."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from processors.store import db, tasks

pytestmark = pytest.mark.integration


def update(task_id: str, update_id: str, changes: dict[str, Any], at: float,
           op: str = "upsert", author: str = "alice") -> tasks.AppliedWindow:
    return tasks.AppliedWindow(
            {"task_id": task_id, "source": "jira", "source_key": "OPS-1", "project": "OPS",
             "op": op, "changes": changes, "update_id": update_id,
             "author": {"kind": "user", "id": author, "name": author, "source": "jira"},
             "source_updated_at": f"2026-11-28T10:00:{int(at):02d}.000Z"},
            {name: at for name in changes}, at + 5, {update_id: (at, f"jira.events:0:{at}")})


def test_late_older_fields_never_overwrite_and_replays_change_nothing(database_url: str) -> None:
    task_id = f"jira:store-{uuid.uuid4().hex[:8]}:1"
    with db.connect(database_url, autocommit=True) as conn:
        tasks.apply_updates(conn, [update(task_id, "u1", {"summary": "new", "status": "Done"},
                                          at=20)])
        # A late update: summary is older than what is stored, priority is new information.
        tasks.apply_updates(conn, [update(task_id, "u2", {"summary": "old", "priority": "High"},
                                          at=10, author="bob")])
        row = tasks.get_task(conn, task_id)
        assert row is not None
        assert row["fields"] == {"summary": "new", "status": "Done", "priority": "High"}
        assert row["last_author"]["id"] == "alice"  # the newest source time keeps the author
        applied = row["updates_applied"]

        tasks.apply_updates(conn, [update(task_id, "u2", {"summary": "old", "priority": "High"},
                                          at=10, author="bob")])
        again = tasks.get_task(conn, task_id)
        assert again is not None and again["fields"] == row["fields"]
        assert again["updates_applied"] == applied, "the same update twice changes nothing"

        memory = tasks.load_memories(conn, [task_id])[task_id]
        assert memory.field_times == {"summary": 20.0, "status": 20.0, "priority": 10.0}
        assert memory.closed_until == 25.0
        assert memory.recent == {"u2": (10.0, "jira.events:0:10")}


def test_a_delete_is_final(database_url: str) -> None:
    task_id = f"jira:store-{uuid.uuid4().hex[:8]}:2"
    with db.connect(database_url, autocommit=True) as conn:
        tasks.apply_updates(conn, [update(task_id, "c", {"summary": "x"}, at=1),
                                   update(task_id, "d", {}, at=2, op="delete"),
                                   update(task_id, "e", {"summary": "back?"}, at=3)])
        row = tasks.get_task(conn, task_id)
    assert row is not None and row["deleted"] is True
    assert row["fields"] == {"summary": "x"}


def test_recent_events_grow_by_added_ids_and_are_replaced_by_a_whole_set(
        database_url: str) -> None:
    """The collapse sends a window's own ids (added to the row's) until it drops old ones,
    then the task's whole set (replacing them); in one batch the rows apply in order."""
    task_id = f"jira:store-{uuid.uuid4().hex[:8]}:3"

    def window(update_id: str, at: float, recent: dict[str, tuple[float, str]],
               whole: bool) -> tasks.AppliedWindow:
        applied = update(task_id, update_id, {"summary": update_id}, at)
        applied.recent_events, applied.recent_whole = recent, whole
        return applied

    with db.connect(database_url, autocommit=True) as conn:
        tasks.apply_updates(conn, [window("a", 1, {"a": (1.0, "o:0:1")}, whole=False)])
        tasks.apply_updates(conn, [window("b", 2, {"b": (2.0, "o:0:2")}, whole=False),
                                   window("c", 3, {"c": (3.0, "o:0:3")}, whole=False)])
        assert tasks.load_memories(conn, [task_id])[task_id].recent == {
            "a": (1.0, "o:0:1"), "b": (2.0, "o:0:2"), "c": (3.0, "o:0:3")}
        tasks.apply_updates(conn, [
            window("d", 4, {"c": (3.0, "o:0:3"), "d": (4.0, "o:0:4")}, whole=True),
            window("e", 5, {"e": (5.0, "o:0:5")}, whole=False)])
        assert tasks.load_memories(conn, [task_id])[task_id].recent == {
            "c": (3.0, "o:0:3"), "d": (4.0, "o:0:4"), "e": (5.0, "o:0:5")}


def test_okr_tallies_count_each_linked_task_once_in_one_query_per_batch(
        database_url: str) -> None:
    """Key-result tallies for a whole batch of links: direct task ids and boxes, each task
    counted once, deleted tasks left out, links that select nothing count 0."""
    run = uuid.uuid4().hex[:8]
    t = [f"jira:okr-{run}:{n}" for n in range(1, 5)]
    rows = [(t[0], "done", [f"b1-{run}"], False), (t[1], "new", [f"b1-{run}", f"b2-{run}"], False),
            (t[2], "done", [], False), (t[3], "done", [f"b1-{run}"], True)]
    with db.connect(database_url, autocommit=True) as conn:
        for task_id, category, box_ids, deleted in rows:
            conn.execute("""INSERT INTO tasks (task_id, source, fields, field_times, box_ids,
                                               deleted)
                            VALUES (%s, 'jira', %s, '{}', %s, %s)""",
                         (task_id, f'{{"status_category": "{category}"}}', box_ids, deleted))
        assert tasks.okr_tallies(conn, [
            ([t[2]], [f"b1-{run}"]),   # t3 directly, t1 and t2 through b1 (t4 is deleted)
            ([], [f"b2-{run}"]),        # t2
            ([t[0]], [f"b1-{run}"]),   # t1 directly and through b1: once
            ([], []),
            ([f"jira:okr-{run}:99"], []),
        ]) == [(3, 2), (1, 0), (2, 1), (0, 0), (0, 0)]
        assert tasks.okr_tallies(conn, []) == []
