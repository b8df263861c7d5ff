"""The webhooks boxsync registered at the sources (`source_webhooks`, migration 0010), and
small named marks of the source upkeep (`source_marks`): in the tenant's schema, so that a
restarted worker, or `boxsync webhooks sync` on another host, knows when each Jira webhook
was last refreshed and where the failed-webhook poll got to."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg

from processors.upkeep.logic import Listed


def remembered(conn: psycopg.Connection) -> dict[tuple[str, str, str], datetime]:
    """(source, site, webhook id) → when it was registered or last refreshed."""
    rows = conn.execute("SELECT source, site, webhook_id, refreshed_at FROM source_webhooks")
    return {(source, site, hook): at for source, site, hook, at in rows.fetchall()}


def record(conn: psycopg.Connection, hook: Listed, at: datetime) -> None:
    """A webhook registered (or found registered without a row) at `at`."""
    conn.execute(
        """INSERT INTO source_webhooks (source, site, webhook_id, target, events, callback_url,
                                        registered_at, refreshed_at, expires_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (source, site, webhook_id) DO UPDATE
              SET target = EXCLUDED.target, events = EXCLUDED.events,
                  callback_url = EXCLUDED.callback_url, refreshed_at = EXCLUDED.refreshed_at,
                  expires_at = EXCLUDED.expires_at""",
        (hook.source, hook.site, hook.webhook_id, hook.target, list(hook.events),
         hook.callback_url, at, at, hook.expires_at))


def refreshed(conn: psycopg.Connection, source: str, site: str, ids: Sequence[str],
              at: datetime, expires_at: datetime | None) -> None:
    conn.execute("UPDATE source_webhooks SET refreshed_at = %s, expires_at = %s "
                 "WHERE source = %s AND site = %s AND webhook_id = ANY(%s)",
                 (at, expires_at, source, site, list(ids)))


def forget(conn: psycopg.Connection, source: str, site: str, ids: Sequence[str]) -> None:
    conn.execute("DELETE FROM source_webhooks WHERE source = %s AND site = %s "
                 "AND webhook_id = ANY(%s)", (source, site, list(ids)))


def mark(conn: psycopg.Connection, name: str) -> str | None:
    row = conn.execute("SELECT value FROM source_marks WHERE name = %s", (name,)).fetchone()
    return str(row[0]) if row else None


def set_mark(conn: psycopg.Connection, name: str, value: str) -> None:
    conn.execute("""INSERT INTO source_marks (name, value) VALUES (%s, %s)
                    ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value,
                                                     updated_at = now()""", (name, value))


def last_written(conn: psycopg.Connection, box_id: str) -> float | None:
    """Epoch seconds of the newest cache write of the box's tasks (a webhook's update or a
    sync's); None when it holds none."""
    row = conn.execute("SELECT extract(epoch FROM max(updated_at))::float8 FROM tasks "
                       "WHERE box_ids @> ARRAY[%s]::text[]", (box_id,)).fetchone()
    return float(row[0]) if row and row[0] is not None else None
