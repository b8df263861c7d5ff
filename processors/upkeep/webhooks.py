"""`boxsync webhooks sync` and `list`, and the worker's upkeep when BOXSYNC_MANAGE_WEBHOOKS is
true: wiring around processors.upkeep.logic (which decides) over the sources' webhook
resources (processors.upkeep.clients) and PostgreSQL (processors.store.source_webhooks).

A source that is not configured, or that refuses (Jira's dynamic webhooks are for Connect
and OAuth 2.0 apps only), is reported and left out; the other source is still kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

import psycopg

from processors.errors import BoxsyncError
from processors.settings import Settings
from processors.store import boxes, source_webhooks
from processors.sync.execute import Sources
from processors.upkeep.clients import JiraWebhooks, TrelloWebhooks
from processors.upkeep.logic import Listed, Plan, Scope, Wanted, plan, wanted


@dataclass
class Outcome:
    """What a sync did (or, for `list`, would do), and what went wrong per source."""

    plan: Plan
    registered: list[Listed] = field(default_factory=list)
    refreshed: list[Listed] = field(default_factory=list)
    removed: list[Listed] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def scopes(conn: psycopg.Connection) -> list[Scope]:
    return [Scope(tuple(box.scope.jira_projects), tuple(box.scope.trello_boards),
                  live=not box.archived and box.status != "closed")
            for box, _waiting, _corrupted, _last in boxes.box_views(conn)]


class WebhookKeeper:
    def __init__(self, settings: Settings, sources: Sources) -> None:
        self._settings = settings
        self._jira = JiraWebhooks(sources.jira) if sources.jira is not None else None
        self._trello = TrelloWebhooks(sources.trello) if sources.trello is not None else None

    def survey(self, conn: psycopg.Connection, now: datetime) -> Outcome:
        """What the sources have against what the boxes need: the plan, nothing changed."""
        want = wanted(scopes(conn),
                      jira_site=self._jira.site if self._jira is not None else None,
                      jira_callback=self._settings.jira_callback_url,
                      trello_callback=self._settings.trello_callback_url)
        errors: dict[str, str] = {}
        listed = self._listed(conn, errors)
        listed_sources = {"jira", "trello"} - set(errors)
        missing = {source for source in ("jira", "trello") if self._client(source) is None}
        for hook in want:
            if hook.source in missing:
                errors.setdefault(hook.source, f"{hook.source} is not configured")
        # Nothing is registered for a source that could not be listed (it might be there).
        want = [hook for hook in want if hook.source in listed_sources - missing]
        return Outcome(plan(want, listed, now, listed_sources - missing), errors=errors)

    def sync(self, conn: psycopg.Connection, now: datetime) -> Outcome:
        """Carry the plan out: register, refresh, remove; PostgreSQL remembers each."""
        outcome = self.survey(conn, now)
        for hook in outcome.plan.register:
            self._guarded(outcome, hook.source, partial(self._register, conn, hook, now, outcome))
        if outcome.plan.refresh and self._jira is not None:
            self._guarded(outcome, "jira", partial(self._refresh, conn, outcome, now))
        for item in outcome.plan.remove:
            self._guarded(outcome, item.source, partial(self._remove, conn, item, outcome))
        return outcome

    def _listed(self, conn: psycopg.Connection, errors: dict[str, str]) -> list[Listed]:
        remembered = source_webhooks.remembered(conn)
        listed: list[Listed] = []
        if self._jira is not None:
            try:
                found = self._jira.listed(self._settings.jira_callback_url)
            except BoxsyncError as exc:
                errors["jira"] = str(exc)
                found = []
            listed.extend(_with_memory(item, remembered) for item in found)
        if self._trello is not None:
            try:
                listed.extend(_with_memory(item, remembered) for item in self._trello.listed())
            except BoxsyncError as exc:
                errors["trello"] = str(exc)
        return listed

    def _register(self, conn: psycopg.Connection, hook: Wanted, now: datetime,
                  outcome: Outcome) -> None:
        client = self._client(hook.source)
        assert client is not None  # the survey registers nothing for a missing source
        made = client.register(hook)
        source_webhooks.record(conn, made, now)
        outcome.registered.append(made)

    def _refresh(self, conn: psycopg.Connection, outcome: Outcome, now: datetime) -> None:
        assert self._jira is not None
        items = outcome.plan.refresh
        expires = self._jira.refresh([item.webhook_id for item in items])
        for item in items:  # a webhook found without a row is remembered from now on
            source_webhooks.record(conn, item, now)
        source_webhooks.refreshed(conn, "jira", self._jira.site,
                                  [item.webhook_id for item in items], now, expires)
        outcome.refreshed.extend(items)

    def _remove(self, conn: psycopg.Connection, item: Listed, outcome: Outcome) -> None:
        if item.source == "jira" and self._jira is not None:
            self._jira.remove([item.webhook_id])
        elif self._trello is not None:
            self._trello.remove(item.webhook_id)
        source_webhooks.forget(conn, item.source, item.site, [item.webhook_id])
        outcome.removed.append(item)

    def _client(self, source: str) -> JiraWebhooks | TrelloWebhooks | None:
        return self._jira if source == "jira" else self._trello

    @staticmethod
    def _guarded(outcome: Outcome, source: str, action: Callable[[], None]) -> None:
        try:
            action()
        except BoxsyncError as exc:
            outcome.errors.setdefault(source, str(exc))


def _with_memory(item: Listed, remembered: dict[tuple[str, str, str], datetime]) -> Listed:
    at = remembered.get((item.source, item.site, item.webhook_id))
    if at is None:
        return item
    # A row means boxsync registered it, whatever the listing says of its description.
    return Listed(item.source, item.site, item.webhook_id, item.target, item.callback_url,
                  item.events, item.expires_at, at, ours=True)
