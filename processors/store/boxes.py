"""Reference data and box state in PostgreSQL: the last record per key of the compacted
topics, box flags, corrupted-scope warnings and the command audit log.

Every write is idempotent under replay: a reference record is kept only when it is newer than
the stored one (another incarnation of its topic, or a higher offset within one: see
processors.runtime.incarnations), a warning is keyed by its cause, a command by its id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from schemas.reference import Box

BOXES = "box.definitions"


def upsert_reference(conn: psycopg.Connection, topic: str, key: str,
                     value: dict[str, Any] | None, incarnation: str, partition: int,
                     offset: int) -> None:
    """Keep the record unless the stored one of the same key is newer: of the same
    incarnation of the topic, the same partition, and at least this offset (a replay)."""
    conn.execute(
        """INSERT INTO reference_records AS r (topic, key, value, deleted, incarnation,
                                               kafka_partition, kafka_offset)
           VALUES (%s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (topic, key) DO UPDATE SET value = EXCLUDED.value,
               deleted = EXCLUDED.deleted, incarnation = EXCLUDED.incarnation,
               kafka_partition = EXCLUDED.kafka_partition,
               kafka_offset = EXCLUDED.kafka_offset, updated_at = now()
           WHERE r.incarnation <> EXCLUDED.incarnation
              OR r.kafka_partition <> EXCLUDED.kafka_partition
              OR r.kafka_offset < EXCLUDED.kafka_offset""",
        (topic, key, None if value is None else Jsonb(value), value is None, incarnation,
         partition, offset))


def reference_incarnations(conn: psycopg.Connection, topic: str) -> set[str]:
    """The incarnations the stored rows of a reference topic were read from."""
    rows = conn.execute("SELECT DISTINCT incarnation FROM reference_records WHERE topic = %s",
                        (topic,)).fetchall()
    return {row[0] for row in rows}


def adopt_incarnation(conn: psycopg.Connection, topic: str, incarnation: str) -> int:
    """Rows written before incarnations were kept belong to the topic as it is now (the
    offsets they were compared by came from it)."""
    return conn.execute("""UPDATE reference_records SET incarnation = %s
                            WHERE topic = %s AND incarnation = ''""",
                        (incarnation, topic)).rowcount


@dataclass(frozen=True)
class ReferenceRow:
    key: str
    value: Any  # a JSON object, None for a tombstone (anything else fails validation)
    partition: int
    offset: int


def replace_reference_topic(conn: psycopg.Connection, topic: str, incarnation: str,
                            rows: list[ReferenceRow]) -> tuple[int, int]:
    """The whole view of a reference topic, rebuilt from its new incarnation: rows of the old
    one that the new one does not hold are gone. Returns (old rows dropped, rows PostgreSQL
    refused: a NUL in a name is not storable in jsonb; the stage dead-letters those)."""
    refused = 0
    with conn.transaction():
        dropped = conn.execute("DELETE FROM reference_records WHERE topic = %s",
                               (topic,)).rowcount
        for row in rows:
            try:
                with conn.transaction():  # a savepoint per row
                    upsert_reference(conn, topic, row.key, row.value, incarnation,
                                     row.partition, row.offset)
            except psycopg.DataError:
                refused += 1
    return dropped, refused


def record_topic_ids(conn: psycopg.Connection, ids: dict[str, str]
                     ) -> list[tuple[str, str, str]]:
    """Remember each topic's incarnation; returns (topic, previous id, id) of each topic
    whose id changed since the last call (a topic seen for the first time is no change)."""
    changed = []
    with conn.transaction():
        for topic, topic_id in sorted(ids.items()):
            row = conn.execute(
                """INSERT INTO topic_incarnations AS t (topic, topic_id) VALUES (%s, %s)
                   ON CONFLICT (topic) DO UPDATE SET topic_id = EXCLUDED.topic_id,
                       previous_topic_id = t.topic_id, changed_at = now()
                   WHERE t.topic_id <> EXCLUDED.topic_id
                   RETURNING previous_topic_id""", (topic, topic_id)).fetchone()
            if row is not None and row[0] is not None:
                changed.append((topic, row[0], topic_id))
    return changed


def ensure_box_state(conn: psycopg.Connection, box_id: str) -> None:
    conn.execute("INSERT INTO box_state (box_id) VALUES (%s) ON CONFLICT DO NOTHING", (box_id,))


def get_box(conn: psycopg.Connection, box_id: str) -> Box | None:
    row = conn.execute(
        """SELECT value FROM reference_records
            WHERE topic = %s AND key = %s AND NOT deleted""", (BOXES, box_id)).fetchone()
    return Box.model_validate(row[0]) if row else None


def boxes_naming(conn: psycopg.Connection, project: str) -> list[Box]:
    """Boxes whose scope names a Jira project key or a Trello board (`trello:<id>`)."""
    board = project.removeprefix("trello:")
    rows = conn.execute(
        """SELECT value FROM reference_records
            WHERE topic = %s AND NOT deleted
              AND (value @> jsonb_build_object('scope', jsonb_build_object(
                       'jira_projects', jsonb_build_array(%s::text)))
                OR value @> jsonb_build_object('scope', jsonb_build_object(
                       'trello_boards', jsonb_build_array(%s::text)))
                OR value @> jsonb_build_object('scope', jsonb_build_object(
                       'trello_boards', jsonb_build_array(%s::text))))
            ORDER BY key""", (BOXES, project, board, f"trello:{board}")).fetchall()
    return [Box.model_validate(row[0]) for row in rows]


def raise_warning(conn: psycopg.Connection, box_id: str, cause_id: str, kind: str,
                  message: str) -> bool:
    """Flag the box; False when this cause was raised before (also when since cleared)."""
    inserted = conn.execute(
        """INSERT INTO box_warnings (box_id, cause_id, kind, message) VALUES (%s, %s, %s, %s)
           ON CONFLICT DO NOTHING RETURNING box_id""",
        (box_id, cause_id, kind, message)).fetchone()
    if inserted:
        _set_state(conn, box_id, "corrupted = true")
    return inserted is not None


def clear_warnings(conn: psycopg.Connection, box_id: str, cleared_by: str | None) -> int:
    cleared = conn.execute(
        """UPDATE box_warnings SET cleared_at = now(), cleared_by = %s
            WHERE box_id = %s AND cleared_at IS NULL""", (cleared_by, box_id)).rowcount
    _set_state(conn, box_id, "corrupted = false")
    return cleared


def _set_state(conn: psycopg.Connection, box_id: str, assignment: str,
               params: tuple[Any, ...] = ()) -> None:
    """Change a box's flags and move its `seq`, so the collapse processes see it."""
    ensure_box_state(conn, box_id)
    conn.execute(f"UPDATE box_state SET {assignment}, seq = nextval('box_state_seq') "
                 "WHERE box_id = %s", (*params, box_id))


def logged_command(conn: psycopg.Connection, command_id: str
                   ) -> tuple[str, list[dict[str, Any]]] | None:
    """(origin, statuses) of a command handled before, or None."""
    row = conn.execute("SELECT origin, statuses FROM command_log WHERE command_id = %s",
                       (command_id,)).fetchone()
    return (row[0], list(row[1])) if row else None


@dataclass(frozen=True)
class CommandRecord:
    command_id: str
    type: str
    box_id: str | None
    requested_by: dict[str, Any] | None
    requested_at: datetime | None
    outcome: str
    reason: str | None
    force: bool
    statuses: list[dict[str, Any]]
    origin: str


def log_command(conn: psycopg.Connection, record: CommandRecord) -> None:
    conn.execute(
        """INSERT INTO command_log (command_id, type, box_id, requested_by, requested_at,
                                    outcome, reason, force, statuses, origin)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
        (record.command_id, record.type, record.box_id, Jsonb(record.requested_by),
         record.requested_at, record.outcome, record.reason, record.force,
         Jsonb(record.statuses), record.origin))


def box_views(conn: psycopg.Connection, box_id: str | None = None
              ) -> list[tuple[Box, bool, bool, datetime | None]]:
    """(definition, waiting_full_sync, corrupted, last_full_sync_at) of one box or all."""
    rows = conn.execute(
        """SELECT r.value, COALESCE(s.waiting_full_sync, false), COALESCE(s.corrupted, false),
                  s.last_full_sync_at
             FROM reference_records r LEFT JOIN box_state s ON s.box_id = r.key
            WHERE r.topic = %s AND NOT r.deleted AND (%s::text IS NULL OR r.key = %s)
            ORDER BY r.key""", (BOXES, box_id, box_id)).fetchall()
    return [(Box.model_validate(value), waiting, corrupted, last)
            for value, waiting, corrupted, last in rows]


def flag_waiting(conn: psycopg.Connection, box_ids: list[str]) -> None:
    for box_id in box_ids:
        _set_state(conn, box_id, "waiting_full_sync = true")


def mark_full_synced(conn: psycopg.Connection, box_id: str, at: datetime) -> None:
    """The box's data is fresh: no longer waiting for a full sync."""
    _set_state(conn, box_id, "waiting_full_sync = false, last_full_sync_at = %s", (at,))


def record_visit(conn: psycopg.Connection, box_id: str, at: datetime) -> None:
    ensure_box_state(conn, box_id)
    conn.execute("UPDATE box_state SET last_visit_at = %s WHERE box_id = %s", (at, box_id))


def tenant_value(conn: psycopg.Connection, name: str) -> Any:
    row = conn.execute("SELECT value FROM tenant_state WHERE name = %s", (name,)).fetchone()
    return row[0] if row else None


def set_tenant_value(conn: psycopg.Connection, name: str, value: Any) -> None:
    conn.execute(
        """INSERT INTO tenant_state (name, value) VALUES (%s, %s) ON CONFLICT (name)
           DO UPDATE SET value = EXCLUDED.value, updated_at = now()""", (name, Jsonb(value)))


def box_report(conn: psycopg.Connection, box_id: str) -> dict[str, Any] | None:
    """Everything `boxsync box show` prints about one box."""
    definition = conn.execute(
        """SELECT value, deleted, updated_at FROM reference_records
            WHERE topic = %s AND key = %s""", (BOXES, box_id)).fetchone()
    if definition is None:
        return None
    state = conn.execute(
        """SELECT corrupted, waiting_full_sync, last_full_sync_at, last_visit_at
             FROM box_state WHERE box_id = %s""", (box_id,)).fetchone()
    warnings = conn.execute(
        """SELECT cause_id, kind, message, raised_at, cleared_at, cleared_by FROM box_warnings
            WHERE box_id = %s ORDER BY raised_at""", (box_id,)).fetchall()
    members, last_update = conn.execute(
        """SELECT count(*), max(updated_at) FROM tasks
            WHERE box_ids @> ARRAY[%s]::text[] AND NOT deleted""", (box_id,)).fetchone() \
        or (0, None)
    corrupted, waiting, last_full, last_visit = state or (False, False, None, None)
    return {
        "box_id": box_id, "deleted": definition[1], "definition": definition[0],
        "definition_updated_at": definition[2],
        "sync_state": {"corrupted_scope": corrupted, "waiting_for_full_sync": waiting,
                       "last_full_sync_at": last_full, "last_visit_at": last_visit},
        "warnings": [dict(zip(("cause_id", "kind", "message", "raised_at", "cleared_at",
                                "cleared_by"), row, strict=True)) for row in warnings],
        "member_count": members, "last_update_at": last_update,
    }


def box_flags_since(conn: psycopg.Connection, seq: int) -> list[tuple[str, bool, bool, int]]:
    """Box flags (corrupted, waiting for a full sync) changed after `seq`, in order."""
    return conn.execute(
        """SELECT box_id, corrupted, waiting_full_sync, seq FROM box_state
            WHERE seq > %s ORDER BY seq""", (seq,)).fetchall()


def lock_for_transaction(conn: psycopg.Connection, key: int) -> None:
    """Hold the advisory lock `key` until the current transaction ends (one worker at a
    time does what it guards)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
