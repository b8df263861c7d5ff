"""One PostgreSQL schema per tenant, so that tenants sharing a database never share a row.

A tenant is a topic prefix (`BOXSYNC_TOPIC_PREFIX`): Kafka separates tenants by topic names,
PostgreSQL by schemas. Every table, sequence and function boxsync owns lives in the tenant's
schema; every connection selects it with `search_path`, so the SQL in `processors.store`
names no schema and cannot reach another tenant's rows by mistake.

Why schemas rather than a tenant column in every key: a forgotten `WHERE tenant = ...` in one
query is a silent leak, while a connection that names one schema cannot see another; a
tenant is dropped, dumped or moved with one command (`DROP SCHEMA`, `pg_dump -n`); and the
hot-path queries and their indexes stay as they are.

The empty prefix (a single-tenant installation, `make run`) keeps `public`, where it has
always been, so an upgrade moves no data. Any other prefix gets `boxsync_<prefix>_<hash>`:
the prefix lowered with every other character an underscore (readable in `psql`), plus eight
hex digits of the prefix's SHA-256, so that `acme.` and `acme-` do not meet in `boxsync_acme`.
`BOXSYNC_DATABASE_SCHEMA` names one explicitly instead.
"""

from __future__ import annotations

import hashlib
import re

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from processors.settings import Settings

DEFAULT_SCHEMA = "public"
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_NOT_WORD = re.compile(r"[^a-z0-9]+")
_SEARCH_PATH = re.compile(r"(?:^|\s)-c\s*search_path=\S*")


def schema_for_prefix(prefix: str) -> str:
    """The schema of the tenant whose topics are named `prefix...`."""
    if not prefix:
        return DEFAULT_SCHEMA
    readable = _NOT_WORD.sub("_", prefix.lower()).strip("_")[:40]
    digest = hashlib.sha256(prefix.encode()).hexdigest()[:8]
    return f"boxsync_{readable}_{digest}" if readable else f"boxsync_{digest}"


def schema_for(settings: Settings) -> str:
    return settings.database_schema or schema_for_prefix(settings.topic_prefix)


def with_schema(url: str, schema: str) -> str:
    """`url` with `search_path` set to `schema` alone, replacing any search_path the URL's
    `options` named (other options are kept)."""
    if not IDENTIFIER.match(schema):
        raise ValueError(f"not a schema name boxsync uses: {schema!r}")
    params = conninfo_to_dict(url)
    options = _SEARCH_PATH.sub("", str(params.get("options") or "")).strip()
    # Only the tenant's schema: with `public` behind it, a table missing from the tenant's
    # schema would silently resolve to another tenant's.
    params["options"] = f"{options} -c search_path={schema}".strip()
    return make_conninfo("", **params)


def names_search_path(url: str) -> bool:
    """Whether the URL's `options` set a search_path (which `with_schema` replaces)."""
    return bool(_SEARCH_PATH.search(str(conninfo_to_dict(url).get("options") or "")))


def schema_of(url: str) -> str:
    """The schema a URL made by `with_schema` selects (`public` when it names none)."""
    options = str(conninfo_to_dict(url).get("options") or "")
    found = _SEARCH_PATH.search(options)
    return found.group(0).split("=", 1)[1] if found else DEFAULT_SCHEMA
