"""A PostgreSQL database of its own for one benchmark run, on the stack's server.

Why not the stack's `boxsync` database: it is shared with whatever else runs on the machine
(`make run`, the integration tests), and a worker's sync runner claims any queued run in its
database and fails runs whose runner stopped beating; a benchmark worker there could take or
fail another process's sync run, and the other side's writes would land in the measurement.
A database per run also starts every contender from the same empty tables, and dropping it
is the whole clean-up.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from psycopg import sql
from psycopg.conninfo import make_conninfo

from processors.settings import Settings
from processors.stack.postgres import server_database_url
from processors.store import db, tenancy


@dataclass(frozen=True)
class Scratch:
    """`url`: the scratch database, for BOXSYNC_DATABASE_URL (no schema: the worker adds its
    tenant's); `tenant_url`: the same with the tenant's schema, for direct connections."""

    url: str
    tenant_url: str


@contextmanager
def scratch_database(settings: Settings, label: str) -> Iterator[Scratch]:
    """Create `bench_<label>_<random>` on the stack's server, migrate the schema of the tenant
    of `settings` (its topic prefix) in it, yield its URLs, and drop it afterwards (closing
    whatever connection is still open on it)."""
    server_url = server_database_url(settings)
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    with db.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = make_conninfo(server_url, dbname=name)
        tenant_url = tenancy.with_schema(url, tenancy.schema_for(settings))
        db.migrate(tenant_url)
        yield Scratch(url, tenant_url)
    finally:
        with db.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))
