"""`boxsync webhooks sync|list`: the Jira and Trello webhooks the boxes need (issue 18 §2)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
import orjson

from processors.cli.common import BoxsyncError, CliContext
from processors.runtime.preflight import check_database
from processors.stack.postgres import resolve_database_url
from processors.store import db as store_db
from processors.store.source_limits import PgLimitStore
from processors.sync.sources import build_sources
from processors.upkeep.logic import Listed, Wanted
from processors.upkeep.webhooks import Outcome, WebhookKeeper

_COLUMNS = ("state", "source", "site", "id", "target", "callback", "refreshed", "expires")


@click.group()
def webhooks() -> None:
    """Register, refresh, remove and list the sources' webhooks."""


@webhooks.command("sync")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object.")
@click.pass_obj
def webhooks_sync(obj: CliContext, as_json: bool) -> None:
    """Make the sources' webhooks what the live boxes need, and say what changed.

    \b
    Jira: one dynamic webhook (issue, comment, worklog and issue-link events,
    `project in (...)` over the boxes' projects) to BOXSYNC_JIRA_CALLBACK_URL,
    refreshed 25 days after its registration or last refresh; Trello: one per
    board to BOXSYNC_TRELLO_CALLBACK_URL. Those no box needs are removed (only
    boxsync's own). Running it twice registers nothing twice. Exit 1 when a
    source could not be kept (the line says why); the other is still kept.
    """
    outcome = _run(obj, sync=True)
    if as_json:
        click.echo(orjson.dumps(_document(outcome)).decode())
    else:
        for verb, items in (("registered", outcome.registered), ("refreshed", outcome.refreshed),
                            ("removed", outcome.removed)):
            for item in items:
                click.echo(f"{verb}: {item.source} {item.webhook_id} {item.target}")
        if not (outcome.registered or outcome.refreshed or outcome.removed):
            click.echo("webhooks: nothing to do")
    _fail_on_errors(outcome)


@webhooks.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the webhooks as one JSON object.")
@click.pass_obj
def webhooks_list(obj: CliContext, as_json: bool) -> None:
    """List the sources' webhooks against what the boxes need; changes nothing.

    \b
    state: ok, refresh (due: `webhooks sync` refreshes it), unneeded (sync
    removes it), missing (sync registers it), foreign (not boxsync's: left alone).
    """
    outcome = _run(obj, sync=False)
    rows = _rows(outcome)
    if as_json:
        click.echo(orjson.dumps({"webhooks": rows, "errors": outcome.errors}).decode())
    else:
        widths = [max([len(c)] + [len(str(row[c] or "")) for row in rows]) for c in _COLUMNS]
        for line in [dict(zip(_COLUMNS, _COLUMNS, strict=True)), *rows]:
            click.echo("  ".join(str(line[c] or "-").ljust(w) for c, w in zip(_COLUMNS, widths,
                                                                              strict=True)))
    _fail_on_errors(outcome)


def _run(obj: CliContext, *, sync: bool) -> Outcome:
    settings = obj.settings
    url = resolve_database_url(settings)
    check_database(url)
    store = PgLimitStore(url)
    try:
        keeper = WebhookKeeper(settings, build_sources(settings, store=store))
        with store_db.connect(url, autocommit=True) as conn:
            now = datetime.now(UTC)
            return keeper.sync(conn, now) if sync else keeper.survey(conn, now)
    finally:
        store.close()


def _rows(outcome: Outcome) -> list[dict[str, Any]]:
    plan = outcome.plan
    rows = [_row("ok", item) for item in plan.keep]
    rows += [_row("refresh", item) for item in plan.refresh]
    rows += [_row("unneeded", item) for item in plan.remove]
    rows += [_row("foreign", item) for item in plan.foreign]
    rows += [_wanted_row(hook) for hook in plan.register]
    return rows


def _row(state: str, item: Listed) -> dict[str, Any]:
    return {"state": state, "source": item.source, "site": item.site, "id": item.webhook_id,
            "target": item.target, "callback": item.callback_url,
            "refreshed": _iso(item.refreshed_at), "expires": _iso(item.expires_at)}


def _wanted_row(hook: Wanted) -> dict[str, Any]:
    return {"state": "missing", "source": hook.source, "site": hook.site, "id": None,
            "target": hook.target, "callback": hook.callback_url, "refreshed": None,
            "expires": None}


def _document(outcome: Outcome) -> dict[str, Any]:
    return {"registered": [_row("registered", i) for i in outcome.registered],
            "refreshed": [_row("refreshed", i) for i in outcome.refreshed],
            "removed": [_row("removed", i) for i in outcome.removed],
            "errors": outcome.errors}


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _fail_on_errors(outcome: Outcome) -> None:
    if outcome.errors:
        raise BoxsyncError("; ".join(f"{source}: {error}"
                                     for source, error in sorted(outcome.errors.items())))
