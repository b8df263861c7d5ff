"""The `tasks` app cache: what the collapse remembers per task, and idempotent upserts.

Every write is a version-guarded upsert: fields merge by source time per field
(`boxsync_merge_fields`), a delete is final, and applying the same update again (a replay after
a crash between the database commit and the Kafka commit) changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from processors.collapse.logic import TaskMemory

_UPSERT = """
INSERT INTO tasks AS t (task_id, source, source_key, project, fields, field_times, last_author,
                        source_updated_at, deleted, closed_until, last_update_id,
                        updates_applied)
VALUES (%(task_id)s, %(source)s, %(source_key)s, %(project)s, %(fields)s, %(field_times)s,
        %(author)s, %(source_updated_at)s, %(deleted)s, %(closed_until)s, %(update_id)s, 1)
ON CONFLICT (task_id) DO UPDATE SET
    source_key = COALESCE(EXCLUDED.source_key, t.source_key),
    project = COALESCE(EXCLUDED.project, t.project),
    fields = boxsync_merge_fields(t.fields, t.field_times, EXCLUDED.fields, EXCLUDED.field_times),
    field_times = boxsync_merge_times(t.field_times, EXCLUDED.field_times),
    last_author = CASE WHEN t.source_updated_at IS NULL
                         OR EXCLUDED.source_updated_at >= t.source_updated_at
                       THEN EXCLUDED.last_author ELSE t.last_author END,
    source_updated_at = GREATEST(t.source_updated_at, EXCLUDED.source_updated_at),
    deleted = t.deleted OR EXCLUDED.deleted,
    closed_until = GREATEST(t.closed_until, EXCLUDED.closed_until),
    last_update_id = EXCLUDED.last_update_id,
    updates_applied = t.updates_applied + 1,
    updated_at = now()
WHERE (NOT t.deleted OR EXCLUDED.deleted)
  AND t.last_update_id IS DISTINCT FROM EXCLUDED.last_update_id
"""


def load_memories(conn: psycopg.Connection, task_ids: Iterable[str]) -> dict[str, TaskMemory]:
    """The collapse memory of every given task that the cache knows."""
    rows = conn.execute(
        "SELECT task_id, deleted, closed_until, field_times FROM tasks WHERE task_id = ANY(%s)",
        (list(task_ids),)).fetchall()
    return {task_id: TaskMemory(deleted=deleted, closed_until=closed_until,
                                field_times={k: float(v) for k, v in times.items()})
            for task_id, deleted, closed_until, times in rows}


def apply_updates(conn: psycopg.Connection,
                  applied: Sequence[tuple[dict[str, Any], dict[str, float], float]]) -> None:
    """Upsert (update, field times, window end) triples in one transaction, in order."""
    if not applied:
        return
    params = [{
        "task_id": update["task_id"], "source": update["source"],
        "source_key": update.get("source_key"), "project": update.get("project"),
        "fields": Jsonb(update["changes"], dumps=_dumps),
        "field_times": Jsonb({k: v for k, v in times.items() if k in update["changes"]},
                             dumps=_dumps),
        "author": Jsonb(update["author"], dumps=_dumps),
        "source_updated_at": update["source_updated_at"],
        "deleted": update["op"] == "delete", "closed_until": window_end,
        "update_id": update["update_id"],
    } for update, times, window_end in applied]
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany(_UPSERT, params)


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


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
