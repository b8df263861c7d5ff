"""`boxsync`: the command line (contract §6).

Each subcommand lives in its own module; this one builds the settings once, turns expected
failures into one line on stderr with a non-zero exit, and registers the groups.
"""

from __future__ import annotations

import sys

import click
import psycopg
from confluent_kafka import KafkaException

from processors.cli.common import BoxsyncError, CliContext
from processors.settings import SettingsError, load_settings


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """boxsync keeps planning boxes in sync with Jira issues and Trello cards.

    \b
    First steps on a fresh clone:
      make run     start Kafka and PostgreSQL locally, the worker, and a demo
      make test    run every test against a real broker and database
    \b
    Settings come from BOXSYNC_* environment variables (see README.md, "Settings").
    """
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    ctx.obj = CliContext(settings=settings)


def _register() -> None:
    from processors.cli import (
        commands_box,
        commands_db,
        commands_demo,
        commands_kafka,
        commands_replay,
        commands_runs,
        commands_stack,
        commands_status,
        commands_sync,
        commands_webhooks,
        commands_worker,
    )

    cli.add_command(commands_stack.stack)
    cli.add_command(commands_kafka.topics)
    cli.add_command(commands_kafka.publish)
    cli.add_command(commands_kafka.consume)
    cli.add_command(commands_db.db_group)
    cli.add_command(commands_db.task)
    cli.add_command(commands_box.box)
    cli.add_command(commands_worker.worker)
    cli.add_command(commands_demo.demo)
    cli.add_command(commands_replay.replay)
    cli.add_command(commands_sync.command)
    cli.add_command(commands_runs.runs)
    cli.add_command(commands_webhooks.webhooks)
    cli.add_command(commands_status.status)


_register()


def main() -> None:
    try:
        # Without standalone mode click returns (not raises) the code given to ctx.exit().
        sys.exit(cli.main(standalone_mode=False) or 0)
    except click.exceptions.Abort:
        click.echo("boxsync: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"boxsync: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code if exc.exit_code else 2)
    except BoxsyncError as exc:
        click.echo(f"boxsync: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (psycopg.Error, KafkaException) as exc:
        # Unexpected, but still one line: what failed, and where to look next.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        click.echo(f"boxsync: {type(exc).__name__}: {first} (check `boxsync stack status`)",
                   err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
