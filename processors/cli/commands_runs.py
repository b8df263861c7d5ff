"""`boxsync runs`: full and incremental sync runs from PostgreSQL, and a box's commands."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click
import orjson
import psycopg

from processors.cli.common import BoxsyncError, CliContext
from processors.runtime.preflight import check_database
from processors.stack.postgres import resolve_database_url
from processors.store import db as store_db
from processors.store import run_log

_RUN_COLUMNS = ("run", "box", "type", "state", "reason", "processed", "emitted", "left",
                "duration", "author", "requested_by", "forced", "queued_at")
_COMMAND_COLUMNS = ("type", "outcome", "reason", "force", "who", "when")


@click.command("runs")
@click.option("--box", "box_id", default=None,
              help="Only this box's runs (and incremental runs that covered it), then its "
                   "last commands.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="At most this many runs (and commands).")
@click.option("--state", type=click.Choice(run_log.RUN_STATES), default=None,
              help="Only runs in this state.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: box_id, runs and (with --box) commands.")
@click.pass_obj
def runs(obj: CliContext, box_id: str | None, limit: int, state: str | None,
         as_json: bool) -> None:
    """List full and incremental sync runs from PostgreSQL, newest first.

    \b
    Columns: run (id, first 12 characters), box, sync type, state, reason,
    processed/total, emitted updates, left (tasks that left their boxes),
    duration (or how long it has been running), author (whom its updates name),
    requested_by, forced (past a corrupted Jira index), queued_at (UTC).
    With --box, the box's last commands follow under "commands": type, outcome,
    reason, force, who, when (from the audit log).
    """
    url = resolve_database_url(obj.settings)
    check_database(url)
    run_rows, command_rows = _read_log(url, box_id, state, limit)
    if as_json:
        _print_json(box_id, run_rows, command_rows)
        return
    _print_runs(run_rows, box_id, state)
    if box_id is not None:
        _print_commands(command_rows)


def _print_json(box_id: str | None, run_rows: list[dict[str, Any]],
                command_rows: list[dict[str, Any]]) -> None:
    document: dict[str, Any] = {"box_id": box_id, "runs": run_rows}
    if box_id is not None:
        document["commands"] = command_rows
    click.echo(orjson.dumps(document, default=str,
                            option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z).decode())


def _read_log(url: str, box_id: str | None, state: str | None, limit: int
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    try:
        with store_db.connect(url, autocommit=True) as conn:
            run_rows = run_log.recent_runs(conn, box_id=box_id, state=state, limit=limit)
            command_rows = run_log.recent_commands(conn, box_id, limit=limit) if box_id else []
    except psycopg.errors.UndefinedTable as exc:
        raise BoxsyncError(f"missing table ({exc.diag.message_primary}); "
                           "run `boxsync db migrate`") from None
    return [_utc(row) for row in run_rows], [_utc(row) for row in command_rows]


def _print_runs(rows: list[dict[str, Any]], box_id: str | None, state: str | None) -> None:
    if not rows:
        where = f" for box {box_id}" if box_id else ""
        which = f" {state}" if state else ""
        click.echo(f"no{which} sync runs{where} yet (runs start with open_box, resync_box, "
                   "scope_saved and incremental_sync)")
        return
    for line in _table(_RUN_COLUMNS, [_run_cells(row) for row in rows]):
        click.echo(line)


def _print_commands(rows: list[dict[str, Any]]) -> None:
    click.echo("")
    click.echo("commands")
    if not rows:
        click.echo("  no commands handled for this box yet")
        return
    cells = [(row["type"], row["outcome"], row["reason"] or "-", _yes(row["force"]),
              person_label(row["requested_by"]), _when(row["handled_at"])) for row in rows]
    for line in _table(_COMMAND_COLUMNS, cells):
        click.echo(f"  {line}")


def _run_cells(row: dict[str, Any]) -> tuple[str, ...]:
    total = "?" if row["total"] is None else str(row["total"])
    return (row["run_id"][:12], row["box_id"] or f"({len(row['box_ids'])} boxes)",
            row["sync_type"], row["state"], row["reason"] or "-",
            f"{row['processed']}/{total}", str(row["emitted"]), str(row["left_count"]),
            run_duration(row), person_label(row["author"]), person_label(row["requested_by"]),
            _yes(row["forced"]), _when(row["queued_at"]))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=False)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in (headers, *rows)]


def format_duration(seconds: float) -> str:
    """12.3s, 4m05s, 2h07m."""
    whole = int(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def run_duration(row: dict[str, Any]) -> str:
    """Finished minus started; `running for X` while open; `not started` when queued."""
    elapsed = row["elapsed_seconds"]
    if elapsed is None:
        return "not started"
    if row["finished_at"] is None and row["state"] not in ("pending", "queued", "running"):
        return "-"  # ended without a finish time: no duration to trust
    text = format_duration(max(0.0, elapsed))
    return text if row["finished_at"] is not None else f"running for {text}"


def person_label(person: dict[str, Any] | None) -> str:
    """A person's name, else id, else kind; `-` for nobody."""
    if not person:
        return "-"
    return str(person.get("name") or person.get("id") or person.get("kind") or "-")


def _utc(row: dict[str, Any]) -> dict[str, Any]:
    # The session time zone is the server's; show every time in UTC, as the contract does.
    return {name: value.astimezone(UTC) if isinstance(value, datetime) else value
            for name, value in row.items()}


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
