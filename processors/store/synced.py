"""The `tasks` cache written by full and incremental sync: one page of source tasks at a time.

Fields merge by source time, per field, exactly as partial updates do (`boxsync_merge_fields`):
a value the run read is kept only where it is at least as new as the cached one, so a partial
change that arrived during the run is never overwritten by the older state the run read. The
merged fields come back, and are what the run emits. The box joins the task's memberships
(`box_ids`); a deleted task stays deleted (a delete is final).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

_UPSERT = """
INSERT INTO tasks AS t (task_id, source, source_key, project, fields, field_times,
                        newest_field_time, last_update_oldest_time, last_author,
                        source_updated_at, last_update_id, updates_applied, box_ids)
SELECT r.task_id, r.source, r.source_key, r.project, r.fields, r.field_times, r.at, r.at,
       r.author, to_timestamp(r.at), r.update_id, 1, ARRAY[%(box)s]::text[]
  FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(task_id text, source text, source_key text,
       project text, fields jsonb, field_times jsonb, at float8, author jsonb, update_id text)
ON CONFLICT (task_id) DO UPDATE SET
    source_key = COALESCE(EXCLUDED.source_key, t.source_key),
    project = COALESCE(EXCLUDED.project, t.project),
    fields = boxsync_merge_fields(t.fields, t.field_times, EXCLUDED.fields,
                                  EXCLUDED.field_times),
    field_times = boxsync_merge_times(t.field_times, EXCLUDED.field_times),
    newest_field_time = GREATEST(t.newest_field_time, EXCLUDED.newest_field_time),
    last_author = CASE WHEN t.source_updated_at IS NULL
                         OR EXCLUDED.source_updated_at >= t.source_updated_at
                       THEN EXCLUDED.last_author ELSE t.last_author END,
    source_updated_at = GREATEST(t.source_updated_at, EXCLUDED.source_updated_at),
    last_update_id = EXCLUDED.last_update_id,
    updates_applied = t.updates_applied + 1,
    box_ids = ARRAY(SELECT DISTINCT unnest(t.box_ids || EXCLUDED.box_ids) ORDER BY 1),
    updated_at = now()
WHERE NOT t.deleted
RETURNING task_id, fields, extract(epoch FROM source_updated_at)::float8
"""


@dataclass(frozen=True, slots=True)
class SyncedTask:
    task_id: str
    source: str
    source_key: str | None
    project: str | None
    fields: dict[str, Any]
    updated_at: float
    author: dict[str, Any]
    update_id: str


def apply_page(conn: psycopg.Connection, box_id: str, page: Sequence[SyncedTask]
               ) -> dict[str, tuple[dict[str, Any], float]]:
    """Write one page in one transaction; task id → (merged fields, source time) of every
    task written (a task deleted in the cache is left out: nothing to emit)."""
    if not page:
        return {}
    rows = [{"task_id": task.task_id, "source": task.source, "source_key": task.source_key,
             "project": task.project, "fields": task.fields,
             "field_times": dict.fromkeys(task.fields, task.updated_at), "at": task.updated_at,
             "author": task.author, "update_id": task.update_id} for task in page]
    with conn.transaction():
        written = conn.execute(_UPSERT, {"rows": orjson.dumps(rows).decode(),
                                         "box": box_id}).fetchall()
    return {task_id: (fields, at) for task_id, fields, at in written}


def leave_box(conn: psycopg.Connection, box_id: str, task_ids: Sequence[str]) -> None:
    """The box no longer selects these tasks."""
    conn.execute("""UPDATE tasks SET box_ids = array_remove(box_ids, %s), updated_at = now()
                     WHERE task_id = ANY(%s)""", (box_id, list(task_ids)))
