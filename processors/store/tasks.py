"""The `tasks` app cache: what the collapse remembers per task, and idempotent upserts.

Every write is a version-guarded upsert: fields merge by source time per field
(`boxsync_merge_fields`), a delete is final, and applying the same update again (a replay after
a crash between the database commit and the Kafka commit) changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import orjson
import psycopg
from psycopg.types.json import Jsonb

from processors.collapse.logic import TaskMemory

_COLUMNS = """task_id text, source text, source_key text, project text, fields jsonb,
              field_times jsonb, oldest_time float8, newest_time float8, author jsonb,
              source_updated_at timestamptz, deleted boolean, closed_until float8,
              update_id text, recent_events jsonb, box_ids text[]"""

# Live updates come in order, so every incoming field is at least as new as everything
# stored and `||` is the merge; a late or replayed update takes the per-field merge.
# INSERT ... ON CONFLICT finds each row through the primary key (a join would scan).
_UPSERT_TEMPLATE = f"""
INSERT INTO tasks AS t (task_id, source, source_key, project, fields, field_times,
                        newest_field_time, last_update_oldest_time, last_author,
                        source_updated_at, deleted, closed_until, last_update_id,
                        updates_applied, recent_events, box_ids)
SELECT r.task_id, r.source, r.source_key, r.project, r.fields, r.field_times, r.newest_time,
       r.oldest_time, r.author, r.source_updated_at, r.deleted, r.closed_until, r.update_id, 1,
       r.recent_events, COALESCE(r.box_ids, '{{}}')
  FROM jsonb_to_recordset(%(rows)s) AS r({_COLUMNS})
ON CONFLICT (task_id) DO UPDATE SET
    source_key = COALESCE(EXCLUDED.source_key, t.source_key),
    project = COALESCE(EXCLUDED.project, t.project),
    fields = CASE WHEN EXCLUDED.last_update_oldest_time >= t.newest_field_time
                  THEN t.fields || EXCLUDED.fields
                  ELSE boxsync_merge_fields(t.fields, t.field_times, EXCLUDED.fields,
                                            EXCLUDED.field_times) END,
    field_times = CASE WHEN EXCLUDED.last_update_oldest_time >= t.newest_field_time
                       THEN t.field_times || EXCLUDED.field_times
                       ELSE boxsync_merge_times(t.field_times, EXCLUDED.field_times) END,
    newest_field_time = GREATEST(t.newest_field_time, EXCLUDED.newest_field_time),
    last_update_oldest_time = EXCLUDED.last_update_oldest_time,
    last_author = CASE WHEN t.source_updated_at IS NULL
                         OR EXCLUDED.source_updated_at >= t.source_updated_at
                       THEN EXCLUDED.last_author ELSE t.last_author END,
    source_updated_at = GREATEST(t.source_updated_at, EXCLUDED.source_updated_at),
    deleted = t.deleted OR EXCLUDED.deleted,
    closed_until = GREATEST(t.closed_until, EXCLUDED.closed_until),
    last_update_id = EXCLUDED.last_update_id,
    updates_applied = t.updates_applied + 1,
    recent_events = {{recent_events}},
    box_ids = EXCLUDED.box_ids,
    updated_at = now()
WHERE (NOT t.deleted OR EXCLUDED.deleted)
  AND t.last_update_id IS DISTINCT FROM EXCLUDED.last_update_id
"""
# A row's recent_events either replaces the stored ids (after the collapse dropped old ones)
# or is added to them (see processors.collapse.logic._remember).
_UPSERT_REPLACING = _UPSERT_TEMPLATE.replace("{recent_events}", "EXCLUDED.recent_events")
_UPSERT_ADDING = _UPSERT_TEMPLATE.replace("{recent_events}",
                                          "t.recent_events || EXCLUDED.recent_events")


# JSON has no infinity; a huge time stands for "no field" and keeps the fast path.
_FOREVER = 1e300


def load_memories(conn: psycopg.Connection, task_ids: Iterable[str]) -> dict[str, TaskMemory]:
    """The collapse memory of every given task that the cache knows."""
    rows = conn.execute(
        """SELECT task_id, deleted, closed_until, field_times, recent_events, project,
                  fields -> 'labels', box_ids
             FROM tasks WHERE task_id = ANY(%s)""", (list(task_ids),)).fetchall()
    return {task_id: TaskMemory(deleted=deleted, closed_until=closed_until,
                                field_times={k: float(v) for k, v in times.items()},
                                recent={k: (float(at), str(origin))
                                        for k, (at, origin) in recent.items()},
                                project=project, labels=label_tuple(labels),
                                box_ids=tuple(box_ids or ()))
            for task_id, deleted, closed_until, times, recent, project, labels, box_ids
            in rows}


def label_tuple(value: Any) -> tuple[str, ...]:
    """A task's `labels` field as the filters compare it (anything else: no labels)."""
    if not isinstance(value, list):
        return ()
    return tuple(label for label in value if isinstance(label, str))


# A gc-untracked msgspec struct: one is built per emitted update.
class AppliedWindow(msgspec.Struct, gc=False):
    """What the cache keeps of one emitted window: the update and the collapse's memory."""

    update: dict[str, Any]
    field_times: dict[str, float]
    window_end: float
    recent_events: dict[str, tuple[float, str]] = msgspec.field(default_factory=dict)
    box_ids: tuple[str, ...] = ()  # the boxes holding the task after this update
    # True: recent_events is the task's whole set, replacing the stored one; False: ids to add.
    recent_whole: bool = True


def apply_updates(conn: psycopg.Connection, applied: Sequence[AppliedWindow]) -> None:
    """Upsert emitted windows in one transaction; a task's are applied in the order given."""
    if not applied:
        return
    # Per round (a task's first window of the batch, its second, ...): the rows replacing
    # recent_events, then the rows adding to it.
    rounds: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
    seen: dict[str, int] = {}
    for window in applied:
        update, times, window_end = window.update, window.field_times, window.window_end
        task_id = update["task_id"]
        index = seen.get(task_id, 0)
        seen[task_id] = index + 1
        if index == len(rounds):
            rounds.append(([], []))
        field_times = {k: v for k, v in times.items() if k in update["changes"]}
        rounds[index][0 if window.recent_whole else 1].append({
            "task_id": task_id, "source": update["source"],
            "source_key": update.get("source_key"), "project": update.get("project"),
            "fields": update["changes"], "field_times": field_times,
            "oldest_time": min(field_times.values(), default=_FOREVER),
            "newest_time": max(field_times.values(), default=-_FOREVER),
            "author": update["author"], "source_updated_at": update["source_updated_at"],
            "deleted": update["op"] == "delete", "closed_until": window_end,
            "update_id": update["update_id"], "recent_events": window.recent_events,
            "box_ids": list(window.box_ids)})
    with conn.transaction():
        for replacing, adding in rounds:
            for statement, rows in ((_UPSERT_REPLACING, replacing), (_UPSERT_ADDING, adding)):
                if rows:
                    # orjson's bytes as they are (psycopg sends them as jsonb, not decoded to
                    # text and encoded back: a batch's rows are megabytes).
                    conn.execute(statement, {"rows": Jsonb(rows, dumps=orjson.dumps)})


def sites_of_issue(conn: psycopg.Connection, issue_id: str) -> list[str]:
    """The Jira sites whose cached tasks have this issue id (uses tasks_jira_issue_id)."""
    rows = conn.execute(
        """SELECT DISTINCT split_part(task_id, ':', 2) FROM tasks
            WHERE source = 'jira' AND split_part(task_id, ':', 3) = %s LIMIT 2""",
        (issue_id,)).fetchall()
    return [row[0] for row in rows]


def get_task(conn: psycopg.Connection, task_id: str) -> dict[str, Any] | None:
    cursor = conn.execute(
        """SELECT task_id, source, source_key, project, fields, last_author, source_updated_at,
                  deleted, last_update_id, updates_applied, updated_at
             FROM tasks WHERE task_id = %s""", (task_id,))
    row = cursor.fetchone()
    if row is None:
        return None
    names = [column.name for column in cursor.description or ()]
    return dict(zip(names, row, strict=True))


def okr_tallies(conn: psycopg.Connection, links: Sequence[tuple[Sequence[str], Sequence[str]]]
                ) -> list[tuple[int, int]]:
    """For each (task ids, box ids) of a key result's links: how many live tasks it links
    (directly or through a box, each once) and how many of them are done. One query for a
    whole batch of key results, not one per link."""
    if not links:
        return []
    rows = conn.execute(
        """SELECT l.n - 1, c.total, c.done
             FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS l(link, n),
                  LATERAL (SELECT ARRAY(SELECT jsonb_array_elements_text(l.link -> 0)) AS ids,
                                  ARRAY(SELECT jsonb_array_elements_text(l.link -> 1)) AS boxes
                          ) AS a,
                  LATERAL (SELECT count(*) AS total, count(*) FILTER (
                                      WHERE fields ->> 'status_category' = 'done') AS done
                             FROM tasks
                            WHERE NOT deleted
                              AND (task_id = ANY(a.ids) OR box_ids && a.boxes)) AS c""",
        (orjson.dumps([[list(t), list(b)] for t, b in links]).decode(),)).fetchall()
    found = {n: (total, done) for n, total, done in rows}
    return [found.get(n, (0, 0)) for n in range(len(links))]
