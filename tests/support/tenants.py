"""A tenant's PostgreSQL schema for a test: migrated when its topics are made, dropped after."""

from __future__ import annotations

from processors.settings import Settings
from processors.stack.postgres import resolve_database_url
from processors.store import db
from processors.store.tenancy import schema_of


def migrate_tenant(settings: Settings) -> str:
    """Create and migrate the schema of the settings' tenant; returns its URL."""
    url = resolve_database_url(settings)
    db.migrate(url)
    return url


def drop_tenant(settings: Settings) -> None:
    url = resolve_database_url(settings)
    if schema_of(url) != "public":
        db.drop_schema(url, schema_of(url))
