"""Sync runs in PostgreSQL: queued by commands, claimed and advanced by the sync runner.

A run is claimed with `FOR UPDATE SKIP LOCKED`, so two runners never take the same one, and a
unique index lets one full sync run per box at a time. The runner beats (`heartbeat_at`) while
it works; a run left `running` by a runner that died is failed (`interrupted`) by the next one
and its box flagged for a new full sync, so no box stays read-only forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from processors.store import boxes

ORPHAN_AFTER_SECONDS = 60
PENDING_GRACE_SECONDS = 30


@dataclass(frozen=True)
class Run:
    run_id: str
    command_id: str | None
    box_id: str | None
    sync_type: str
    requested_by: dict[str, Any] | None
    author: dict[str, Any] | None
    forced: bool
    box_ids: list[str]


_RUN_COLUMNS = "run_id, command_id, box_id, sync_type, requested_by, author, forced, box_ids"


def queue(conn: psycopg.Connection, run: Run, tenant: str, state: str = "queued") -> bool:
    """Queue a run of a tenant (the topic prefix); False when a run with this id exists (a
    replayed command). A command's run starts `pending`: it becomes `queued` once the command's
    `queued` status is committed on Kafka (`release`), so no runner's `running` status can
    overtake it."""
    inserted = conn.execute(
        f"""INSERT INTO sync_runs ({_RUN_COLUMNS}, state, tenant)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (run_id) DO NOTHING RETURNING run_id""",
        (run.run_id, run.command_id, run.box_id, run.sync_type, Jsonb(run.requested_by),
         Jsonb(run.author), run.forced, list(run.box_ids), state, tenant)).fetchone()
    return inserted is not None


def supersede(conn: psycopg.Connection, box_id: str, except_run: str) -> list[str]:
    """A newer full sync of the box: drop its queued ones, ask the running one to stop."""
    dropped = conn.execute(
        """UPDATE sync_runs SET state = 'failed', reason = 'superseded', finished_at = now()
            WHERE box_id = %s AND state IN ('pending', 'queued') AND run_id <> %s
              AND sync_type = 'full'
        RETURNING run_id""", (box_id, except_run)).fetchall()
    conn.execute("""UPDATE sync_runs SET cancel_requested = true
                     WHERE box_id = %s AND state = 'running' AND run_id <> %s""",
                 (box_id, except_run))
    return [row[0] for row in dropped]


def running_run(conn: psycopg.Connection, box_id: str) -> str | None:
    row = conn.execute("SELECT run_id FROM sync_runs WHERE box_id = %s AND state = 'running'",
                       (box_id,)).fetchone()
    return row[0] if row else None


def release(conn: psycopg.Connection, run_ids: Sequence[str]) -> None:
    """Pending runs become claimable: their `queued` status is on Kafka."""
    conn.execute("""UPDATE sync_runs SET state = 'queued'
                     WHERE run_id = ANY(%s) AND state = 'pending'""", (list(run_ids),))


def claim(conn: psycopg.Connection, owner: str, tenant: str) -> Run | None:
    """Take the tenant's oldest queued run whose box has no run going (one transaction). A run
    still `pending` after PENDING_GRACE_SECONDS is taken too: its worker died between the
    Kafka commit and `release` (or the Kafka transaction aborted and the command, read again,
    found its run already there)."""
    with conn.transaction():
        row = conn.execute(
            f"""SELECT {_RUN_COLUMNS} FROM sync_runs q
                 WHERE tenant = %s AND (state = 'queued' OR (state = 'pending'
                       AND queued_at < now() - make_interval(secs => %s)))
                   AND (box_id IS NULL OR NOT EXISTS (
                       SELECT 1 FROM sync_runs r WHERE r.box_id = q.box_id
                          AND r.state = 'running'))
                 ORDER BY queued_at LIMIT 1 FOR UPDATE SKIP LOCKED""",
            (tenant, PENDING_GRACE_SECONDS)).fetchone()
        if row is None:
            return None
        conn.execute("""UPDATE sync_runs SET state = 'running', owner = %s, started_at = now(),
                               heartbeat_at = now() WHERE run_id = %s""", (owner, row[0]))
    return _run(row)


def progress(conn: psycopg.Connection, run_id: str, processed: int, total: int | None,
             emitted: int, left: int) -> bool:
    """Record progress and beat; True when someone asked the run to stop."""
    row = conn.execute(
        """UPDATE sync_runs SET processed = %s, total = %s, emitted = %s, left_count = %s,
                  heartbeat_at = now() WHERE run_id = %s RETURNING cancel_requested""",
        (processed, total, emitted, left, run_id)).fetchone()
    return bool(row and row[0])


def finish(conn: psycopg.Connection, run_id: str, state: str, reason: str | None) -> None:
    conn.execute("""UPDATE sync_runs SET state = %s, reason = %s, finished_at = now()
                     WHERE run_id = %s""", (state, reason, run_id))


def orphans(conn: psycopg.Connection, owner: str, tenant: str) -> list[Run]:
    """The tenant's runs left `running` by this runner's previous life, or by one that stopped
    beating; failed here (`interrupted`) and their boxes flagged for a new full sync."""
    rows = conn.execute(
        f"""UPDATE sync_runs SET state = 'failed', reason = 'interrupted', finished_at = now()
             WHERE state = 'running' AND tenant = %s AND (owner = %s OR heartbeat_at < now()
                   - make_interval(secs => %s))
         RETURNING {_RUN_COLUMNS}""", (tenant, owner, ORPHAN_AFTER_SECONDS)).fetchall()
    runs = [_run(row) for row in rows]
    boxes.flag_waiting(conn, [run.box_id for run in runs if run.box_id is not None])
    return runs


def members(conn: psycopg.Connection, box_id: str) -> dict[str, float]:
    """Task id → cached source time (epoch seconds) of every task the box holds."""
    rows = conn.execute(
        """SELECT task_id, COALESCE(extract(epoch FROM source_updated_at), 0)::float8
             FROM tasks WHERE box_ids @> ARRAY[%s]::text[] AND NOT deleted""",
        (box_id,)).fetchall()
    return {task_id: at for task_id, at in rows}


def changed_since(conn: psycopg.Connection, box_id: str, since: datetime,
                  run_update_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Tasks of the box whose cache a partial update changed after `since` (not the run)."""
    cursor = conn.execute(
        """SELECT task_id, source, source_key, project, fields, last_author, source_updated_at
             FROM tasks WHERE box_ids @> ARRAY[%s]::text[] AND NOT deleted
              AND updated_at > %s AND NOT (last_update_id = ANY(%s))""",
        (box_id, since, list(run_update_ids)))
    names = [column.name for column in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def grants_of(conn: psycopg.Connection, user_id: str) -> dict[str, frozenset[str]]:
    """Project (or `trello:<board>`) → permissions of one user, from `jira.permissions`."""
    rows = conn.execute(
        """SELECT value ->> 'project', value -> 'permissions' FROM reference_records
            WHERE topic = 'jira.permissions' AND NOT deleted AND value ->> 'user_id' = %s""",
        (user_id,)).fetchall()
    return {project: frozenset(perms or ()) for project, perms in rows}


def _run(row: Sequence[Any]) -> Run:
    return Run(run_id=row[0], command_id=row[1], box_id=row[2], sync_type=row[3],
               requested_by=row[4], author=row[5], forced=row[6], box_ids=list(row[7] or ()))


def boxes_by_sync_state(conn: psycopg.Connection) -> dict[str, int]:
    """Boxes by sync state, for `boxsync_boxes{sync_state}`."""
    row = conn.execute(
        """SELECT count(*) FILTER (WHERE r.run_id IS NOT NULL),
                  count(*) FILTER (WHERE r.run_id IS NULL AND s.corrupted),
                  count(*) FILTER (WHERE r.run_id IS NULL AND NOT s.corrupted
                                     AND s.waiting_full_sync),
                  count(*) FILTER (WHERE r.run_id IS NULL AND NOT s.corrupted
                                     AND NOT s.waiting_full_sync)
             FROM box_state s
             LEFT JOIN sync_runs r ON r.box_id = s.box_id AND r.state = 'running'""").fetchone()
    running, corrupted, waiting, idle = row or (0, 0, 0, 0)
    return {"running": running, "corrupted_scope": corrupted, "waiting_for_full_sync": waiting,
            "idle": idle}
