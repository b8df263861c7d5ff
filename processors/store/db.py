"""PostgreSQL connections and versioned migrations (`boxsync db migrate`).

Migrations are the files `processors/store/migrations/NNNN_name.sql`, applied in order, each in
its own transaction, recorded in `schema_migrations`; an advisory lock keeps two workers from
migrating at once. Applying them again does nothing.

Each tenant has its own schema (processors.store.tenancy): `migrate` creates it and applies
the migrations inside it; the SQL files name no schema, the connection's search_path does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import set_json_loads

from processors.store.tenancy import schema_of

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x626F7873  # "boxs"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def connect(url: str, *, autocommit: bool = False, timeout: float = 5) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=max(1, int(timeout)))
    # jsonb columns are read on the hot path (the collapse's task memory): orjson decodes
    # them several times faster than the standard library.
    set_json_loads(orjson.loads, conn)
    return conn


def migrations() -> list[Migration]:
    found = []
    for entry in resources.files("processors.store").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found, key=lambda migration: migration.version)


def migrate(url: str) -> list[Migration]:
    """Create the URL's tenant schema if needed and apply the migrations not applied there
    yet; returns those applied now."""
    applied_now = []
    schema = schema_of(url)
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (_LOCK_KEY, schema))
        try:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY, name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())""")
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for migration in migrations():
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                                 (migration.version, migration.name))
                applied_now.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_LOCK_KEY, schema))
    return applied_now


def pending(url: str) -> list[Migration]:
    with connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
        done = set()
        if exists and exists[0]:
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    return [m for m in migrations() if m.version not in done]


def migrated_schemas(url: str) -> list[str]:
    """Every schema of the database that boxsync has migrated (has a `schema_migrations`)."""
    with connect(url, autocommit=True) as conn:
        rows = conn.execute("""SELECT table_schema FROM information_schema.tables
                                WHERE table_name = 'schema_migrations'
                                ORDER BY table_schema""").fetchall()
    return [row[0] for row in rows]


def drop_schema(url: str, schema: str) -> None:
    """Drop a tenant's schema and everything in it (tests and benchmarks clean up so)."""
    if schema == "public":
        raise ValueError("refusing to drop the public schema")
    with connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
