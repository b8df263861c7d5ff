"""Which webhooks the sources should have, and what to do about those they have: pure, time
injected, no I/O (the wiring is processors.upkeep.webhooks).

**Wanted.** Jira: one dynamic webhook per site for the issue, comment, worklog and issue-link
events, filtered by `project in (...)` over every project a live box's scope names (live:
not archived, not closed); Trello: one webhook per board a live box names. Both deliver to
the gateway's callback URL (BOXSYNC_JIRA_CALLBACK_URL, BOXSYNC_TRELLO_CALLBACK_URL).

**The plan** compares that with what the source lists (the source's word is the truth: a
webhook someone removed there is registered again): a wanted webhook that no listed one
matches (same target, callback URL and events) is registered; a listed one that nothing
wants is removed if boxsync registered it (someone else's webhooks on the same token are
left alone); a Jira one last registered or refreshed 25 days ago or more (or whose
expiry Jira gives as within 5 days) is refreshed, since Jira drops dynamic webhooks 30 days
after that. Two matching listed webhooks keep the first, and the second is removed. Running
the plan again after it was carried out finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

JIRA_EVENTS = ("jira:issue_created", "jira:issue_updated", "jira:issue_deleted",
               "comment_created", "comment_updated", "comment_deleted",
               "worklog_created", "worklog_updated", "worklog_deleted",
               "issuelink_created", "issuelink_deleted")
REFRESH_AFTER = timedelta(days=25)
EXPIRY_MARGIN = timedelta(days=5)


@dataclass(frozen=True, slots=True)
class Wanted:
    source: str  # jira, trello
    site: str  # the Jira host, or `trello`
    target: str  # the JQL filter, or the board id
    callback_url: str
    events: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Listed:
    """A webhook as the source lists it, with what PostgreSQL remembers of it."""

    source: str
    site: str
    webhook_id: str
    target: str
    callback_url: str
    events: tuple[str, ...] = ()
    expires_at: datetime | None = None  # Jira's expirationDate
    refreshed_at: datetime | None = None  # registered or last refreshed (PostgreSQL)
    # Registered by boxsync (remembered in PostgreSQL, or Trello's description `boxsync`):
    # only those are ever removed; a token's other webhooks are someone else's.
    ours: bool = True

    def matches(self, wanted: Wanted) -> bool:
        return (self.source, self.site, self.target, self.callback_url,
                frozenset(self.events)) == (wanted.source, wanted.site, wanted.target,
                                            wanted.callback_url, frozenset(wanted.events))


@dataclass(frozen=True, slots=True)
class Plan:
    register: list[Wanted] = field(default_factory=list)
    refresh: list[Listed] = field(default_factory=list)
    remove: list[Listed] = field(default_factory=list)
    keep: list[Listed] = field(default_factory=list)
    foreign: list[Listed] = field(default_factory=list)  # not boxsync's, not wanted: left

    @property
    def empty(self) -> bool:
        return not (self.register or self.refresh or self.remove)


@dataclass(frozen=True, slots=True)
class Scope:
    """The part of a box that webhooks care about."""

    jira_projects: tuple[str, ...] = ()
    trello_boards: tuple[str, ...] = ()
    live: bool = True


def jql_filter(projects: Iterable[str]) -> str:
    """`project in ("A", "B")`, sorted and quoted, as the search JQL quotes keys."""
    quoted = ", ".join('"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
                       for key in sorted(set(projects)))
    return f"project in ({quoted})"


def wanted(scopes: Iterable[Scope], *, jira_site: str | None, jira_callback: str | None,
           trello_callback: str | None) -> list[Wanted]:
    """The webhooks the live boxes need; none for a source without a site or callback."""
    live = [scope for scope in scopes if scope.live]
    result: list[Wanted] = []
    projects = {key for scope in live for key in scope.jira_projects if key}
    if projects and jira_site and jira_callback:
        result.append(Wanted("jira", jira_site, jql_filter(projects), jira_callback,
                             JIRA_EVENTS))
    boards = {board.removeprefix("trello:") for scope in live for board in scope.trello_boards}
    if trello_callback:
        result.extend(Wanted("trello", "trello", board, trello_callback)
                      for board in sorted(board for board in boards if board))
    return result


def plan(wanted_hooks: Sequence[Wanted], listed: Sequence[Listed], now: datetime,
         sources: Iterable[str] = ("jira", "trello")) -> Plan:
    """What to register, refresh and remove (see the module docstring). Only the listed
    webhooks of `sources` (those boxsync could list) are considered for removal."""
    managed = set(sources)
    result = Plan()
    taken: set[int] = set()
    for hook in wanted_hooks:
        index = next((i for i, item in enumerate(listed)
                      if i not in taken and item.matches(hook)), None)
        if index is None:
            result.register.append(hook)
            continue
        taken.add(index)
        item = listed[index]
        (result.refresh if due(item, now) else result.keep).append(item)
    for i, item in enumerate(listed):
        if i not in taken and item.source in managed:
            (result.remove if item.ours else result.foreign).append(item)
    return result


def due(item: Listed, now: datetime) -> bool:
    """A Jira webhook to refresh now: never refreshed as far as boxsync knows, refreshed 25
    days ago or more, or expiring within 5 days. Trello's do not expire."""
    if item.source != "jira":
        return False
    if item.expires_at is not None and item.expires_at - now <= EXPIRY_MARGIN:
        return True
    return item.refreshed_at is None or now - item.refreshed_at >= REFRESH_AFTER

