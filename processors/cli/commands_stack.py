"""`boxsync stack up|down|status`: the local Kafka broker and PostgreSQL for development.

The work happens in `processors.stack`; these commands only print. Failures surface as
`StackError` (a `BoxsyncError`), which the entry point prints as one line.
"""

from __future__ import annotations

import click

from processors.cli.common import BoxsyncError, CliContext
from processors.settings import Settings
from processors.stack.services import (
    ServiceStatus,
    display_path,
    stack_down,
    stack_status,
    stack_up,
)


def _format(status: ServiceStatus) -> str:
    """name, state, address, pid, log: one aligned line per service."""
    pid = str(status.pid) if status.pid is not None else "-"
    log = display_path(status.log_file) if status.log_file is not None else "-"
    line = f"{status.name:<9} {status.state:<8} {status.address}  pid={pid}  log={log}"
    return f"{line}  ({status.detail})" if status.detail else line


def _print_table(statuses: list[ServiceStatus]) -> None:
    for status in statuses:
        click.echo(_format(status))


@click.group()
def stack() -> None:
    """Run Kafka and PostgreSQL locally (under BOXSYNC_LOCAL_DIR, default .local/).

    \b
    Kafka 3.9 runs as a single KRaft node on 127.0.0.1 (jars fetched once with Maven), or
    as N nodes with --brokers N.
    PostgreSQL runs embedded on a Unix socket, unless BOXSYNC_DATABASE_URL names one.
    """


BROKERS = click.option(
    "--brokers", type=click.IntRange(1, 5), default=None,
    help="KRaft nodes (controller + broker each; default BOXSYNC_KAFKA_BROKERS, 1). Node n "
         "listens on the bootstrap and controller ports + 100*(n-1); from 3 nodes topics get "
         "replication factor 3 and min.insync.replicas=2.")


def _with_brokers(settings: Settings, brokers: int | None) -> Settings:
    return settings if brokers is None else settings.model_copy(update={"kafka_brokers": brokers})


@stack.command()
@BROKERS
@click.pass_obj
def up(obj: CliContext, brokers: int | None) -> None:
    """Start what is not running yet and wait until it answers (harmless when running)."""
    _print_table(stack_up(_with_brokers(obj.settings, brokers), echo=click.echo))


@stack.command()
@click.pass_obj
def down(obj: CliContext) -> None:
    """Stop the services `up` started (harmless when nothing runs)."""
    _print_table(stack_down(obj.settings, echo=click.echo))


@stack.command()
@click.option("--check", is_flag=True, help="Exit 1 unless every service is running/external.")
@BROKERS
@click.pass_obj
def status(obj: CliContext, check: bool, brokers: int | None) -> None:
    """Show each service: state, address, pid and log file."""
    statuses = stack_status(_with_brokers(obj.settings, brokers))
    _print_table(statuses)
    stopped = [service.name for service in statuses if service.state == "stopped"]
    if check and stopped:
        raise BoxsyncError(f"not running: {', '.join(stopped)} (start with `boxsync stack up`)")
