"""`boxsync box show`: what boxsync knows about one box."""

from __future__ import annotations

from typing import Any

import click
import orjson

from processors.cli.common import BoxsyncError, CliContext
from processors.runtime.preflight import check_database
from processors.stack.postgres import resolve_database_url
from processors.store import boxes
from processors.store import db as store_db


@click.group()
def box() -> None:
    """Look at boxes: definition, sync state, warnings, members."""


@box.command("show")
@click.argument("box_id")
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
@click.pass_obj
def box_show(obj: CliContext, box_id: str, as_json: bool) -> None:
    """Show one box: its definition (from `box.definitions`), its sync state (corrupted
    scope, waiting for a full sync, last full sync, last visit), its warnings with their causes,
    how many cached tasks it holds and when one last changed.

    A box flagged for corrupted scope takes no update until a box admin sends
    `clear_box_warnings` (after fixing the cause).
    """
    url = resolve_database_url(obj.settings)
    check_database(url)
    with store_db.connect(url, autocommit=True) as conn:
        report = boxes.box_report(conn, box_id)
    if report is None:
        raise BoxsyncError(f"no box {box_id}: boxsync has not read it from box.definitions "
                           "(is the worker running, and was the box published?)")
    if as_json:
        click.echo(orjson.dumps(report, default=str, option=orjson.OPT_INDENT_2).decode())
        return
    _print_report(report)


def _print_report(report: dict[str, Any]) -> None:
    definition = report["definition"] or {}
    scope = definition.get("scope") or {}
    click.echo(f"{'box_id':22} {report['box_id']}{'  (deleted)' if report['deleted'] else ''}")
    for name in ("name", "box_type", "scope_type", "parent_box_id", "status", "archived"):
        click.echo(f"{name:22} {definition.get(name)}")
    click.echo(f"{'scope':22} projects={scope.get('jira_projects') or []} "
               f"boards={scope.get('trello_boards') or []} "
               f"labels_all={scope.get('labels_all') or []}")
    for name, value in report["sync_state"].items():
        click.echo(f"{name:22} {value}")
    click.echo(f"{'member_count':22} {report['member_count']}")
    click.echo(f"{'last_update_at':22} {report['last_update_at']}")
    open_warnings = [w for w in report["warnings"] if w["cleared_at"] is None]
    click.echo(f"{'warnings':22} {len(open_warnings)} open, "
               f"{len(report['warnings']) - len(open_warnings)} cleared")
    for warning in report["warnings"]:
        state = "open" if warning["cleared_at"] is None else \
            f"cleared {warning['cleared_at']} by {warning['cleared_by']}"
        click.echo(f"  [{state}] {warning['kind']}: {warning['message']}")
