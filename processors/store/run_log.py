"""Read-only queries over the sync run log (`sync_runs`) and the command audit log
(`command_log`), for `boxsync runs`.

Nothing here writes: the sync runner owns `sync_runs` and the command stage owns
`command_log`. Rows come back as plain dicts (column name to value; jsonb already decoded).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

RUN_STATES: tuple[str, ...] = ("pending", "queued", "running", "completed", "failed")

# `elapsed_seconds`: finished minus started, or (still running) the database's now minus
# started; null for a run that never started. Taken from the database clock so that a CLI
# host with a skewed clock still shows the right "running for".
_RUNS = """
SELECT run_id, command_id, box_id, box_ids, sync_type, state, reason, processed, total,
       emitted, left_count, author, requested_by, forced, queued_at, started_at, finished_at,
       EXTRACT(EPOCH FROM (COALESCE(finished_at, now()) - started_at))::float8
           AS elapsed_seconds
  FROM sync_runs
 WHERE (%(box)s::text IS NULL OR box_id = %(box)s OR %(box)s = ANY(box_ids))
   AND (%(state)s::text IS NULL OR state = %(state)s)
 ORDER BY queued_at DESC, run_id DESC
 LIMIT %(limit)s
"""

_COMMANDS = """
SELECT command_id, type, box_id, outcome, reason, force, requested_by, requested_at,
       handled_at
  FROM command_log
 WHERE box_id = %(box)s
 ORDER BY handled_at DESC, command_id DESC
 LIMIT %(limit)s
"""


def recent_runs(conn: psycopg.Connection, *, box_id: str | None = None,
                state: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The newest `limit` runs, newest queued first; with `box_id`, the runs of that box,
    including incremental runs that covered it (their `box_ids` list it)."""
    params = {"box": box_id, "state": state, "limit": limit}
    with conn.cursor(row_factory=dict_row) as cursor:
        return list(cursor.execute(_RUNS, params).fetchall())


def recent_commands(conn: psycopg.Connection, box_id: str, *, limit: int = 20
                    ) -> list[dict[str, Any]]:
    """The newest `limit` commands handled for one box, newest first."""
    params = {"box": box_id, "limit": limit}
    with conn.cursor(row_factory=dict_row) as cursor:
        return list(cursor.execute(_COMMANDS, params).fetchall())
