"""The webhook plan (processors.upkeep.logic): pure, with fixed times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processors.upkeep.logic import (
    JIRA_EVENTS,
    Listed,
    Scope,
    Wanted,
    due,
    jql_filter,
    plan,
    wanted,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
CB = "https://gw.example.com/webhooks/jira"


def jira_listed(webhook_id: str, target: str, **options: object) -> Listed:
    return Listed("jira", "acme.atlassian.net", webhook_id, target, CB, JIRA_EVENTS,
                  **options)  # type: ignore[arg-type]


def test_wanted_unions_live_scopes_per_source() -> None:
    scopes = [Scope(("OPS", "WEB"), ("b1",)), Scope(("SEC",), ("trello:b2", "b1")),
              Scope(("OLD",), ("b3",), live=False)]
    hooks = wanted(scopes, jira_site="acme.atlassian.net", jira_callback=CB,
                   trello_callback="https://gw/t")
    assert [(h.source, h.target) for h in hooks] == [
        ("jira", 'project in ("OPS", "SEC", "WEB")'), ("trello", "b1"), ("trello", "b2")]
    assert wanted(scopes, jira_site="acme.atlassian.net", jira_callback=None,
                  trello_callback=None) == []


def test_jql_filter_quotes_keys() -> None:
    assert jql_filter(['A"B', "C"]) == 'project in ("A\\"B", "C")'


def test_plan_registers_missing_keeps_matching_removes_ours_only() -> None:
    want = [Wanted("jira", "acme.atlassian.net", jql_filter(["OPS"]), CB, JIRA_EVENTS)]
    listed = [jira_listed("1", jql_filter(["OPS"]), refreshed_at=NOW),
              jira_listed("2", jql_filter(["OPS"]), refreshed_at=NOW),  # a duplicate
              jira_listed("3", jql_filter(["OLD"]), refreshed_at=NOW),
              jira_listed("4", jql_filter(["X"]), ours=False)]
    result = plan(want, listed, NOW)
    assert [i.webhook_id for i in result.keep] == ["1"]
    assert [i.webhook_id for i in result.remove] == ["2", "3"]
    assert [i.webhook_id for i in result.foreign] == ["4"]
    assert result.register == [] and result.refresh == []
    assert plan(want, [], NOW).register == want


def test_a_listed_webhook_of_a_source_that_could_not_be_listed_is_never_removed() -> None:
    listed = [jira_listed("3", jql_filter(["OLD"]), refreshed_at=NOW)]
    assert plan([], listed, NOW, sources=("trello",)).remove == []


def test_refresh_is_due_after_25_days_or_near_expiry_or_when_unknown() -> None:
    fresh = jira_listed("1", "f", refreshed_at=NOW - timedelta(days=24, hours=23))
    assert not due(fresh, NOW)
    assert due(jira_listed("1", "f", refreshed_at=NOW - timedelta(days=25)), NOW)
    assert due(jira_listed("1", "f"), NOW)  # boxsync has no record of a refresh
    assert due(jira_listed("1", "f", refreshed_at=NOW,
                           expires_at=NOW + timedelta(days=4)), NOW)
    assert not due(Listed("trello", "trello", "x", "b", "cb"), NOW)
