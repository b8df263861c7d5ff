"""`boxsync db migrate` and `boxsync task show`."""

from __future__ import annotations

import click
import orjson

from processors.cli.common import BoxsyncError, CliContext
from processors.runtime.preflight import check_database, check_database_reachable
from processors.stack.postgres import resolve_database_url, server_database_url
from processors.store import db as store_db
from processors.store import tasks, tenancy


@click.group("db")
def db_group() -> None:
    """The PostgreSQL app cache (BOXSYNC_DATABASE_URL, or the local embedded server)."""


@db_group.command("migrate")
@click.option("--tenant", "prefixes", multiple=True, metavar="PREFIX",
              help="Migrate the schema of the tenant with this topic prefix (repeatable; "
                   "\"\" is the unprefixed tenant). Default: BOXSYNC_TOPIC_PREFIX's.")
@click.option("--all", "every", is_flag=True,
              help="Also migrate every schema of the database migrated before.")
@click.pass_obj
def migrate(obj: CliContext, prefixes: tuple[str, ...], every: bool) -> None:
    """Apply the versioned SQL migrations not applied yet (safe to run again).

    Each tenant (topic prefix) has its own PostgreSQL schema, created here: `public` for the
    empty prefix, `boxsync_<prefix>_<hash>` otherwise (BOXSYNC_DATABASE_SCHEMA overrides).

    \b
    Examples:
      boxsync db migrate                          # this tenant (BOXSYNC_TOPIC_PREFIX)
      boxsync db migrate --tenant acme. --tenant globex.
      boxsync db migrate --all                    # after an upgrade: every tenant
    """
    settings = obj.settings
    server = server_database_url(settings)
    check_database_reachable(server)
    urls = {}
    for prefix in prefixes or (settings.topic_prefix,):
        url = resolve_database_url(settings.model_copy(update={
            "topic_prefix": prefix, "database_schema": None if prefixes else
            settings.database_schema}))
        urls[tenancy.schema_of(url)] = url
    if every:
        for schema in store_db.migrated_schemas(server):
            urls.setdefault(schema, tenancy.with_schema(server, schema))
    latest = max((m.version for m in store_db.migrations()), default=0)
    for schema, url in urls.items():
        applied = store_db.migrate(url)
        for migration in applied:
            click.echo(f"applied  {migration.version:04d}_{migration.name} in {schema}")
        click.echo(f"schema {schema} is at version {latest} ({len(applied)} applied now)")


@click.group()
def task() -> None:
    """Look at tasks in the app cache."""


@task.command("show")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print the row as JSON.")
@click.pass_obj
def task_show(obj: CliContext, task_id: str, as_json: bool) -> None:
    """Show one task: its current fields, last author and source time.

    TASK_ID is `jira:<site>:<issue id>` or `trello:<card id>`.
    """
    url = resolve_database_url(obj.settings)
    check_database(url)
    with store_db.connect(url, autocommit=True) as conn:
        row = tasks.get_task(conn, task_id)
    if row is None:
        raise BoxsyncError(f"no task {task_id} in the cache (ids look like jira:<site>:<id>)")
    if as_json:
        click.echo(orjson.dumps(row, default=str, option=orjson.OPT_INDENT_2).decode())
        return
    for name in ("task_id", "source", "source_key", "project", "deleted", "source_updated_at",
                 "last_update_id", "updates_applied"):
        click.echo(f"{name:18} {row[name]}")
    author = row["last_author"] or {}
    click.echo(f"{'last_author':18} {author.get('name') or author.get('id')} "
               f"({author.get('kind')})")
    for name, value in sorted((row["fields"] or {}).items()):
        click.echo(f"  {name:16} {orjson.dumps(value).decode()}")
