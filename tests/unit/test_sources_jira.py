"""The pure parts of the Jira task source: JQL building, Jira times, ADF to text, credentials."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from processors.sources.http import RetryPolicy, _retry_after_seconds
from processors.sources.jira import JiraSource, adf_to_text, build_jql, parse_jira_time


def test_jql_quotes_projects_and_requires_every_label() -> None:
    assert build_jql(["OPS", "WEB"], ["q3", "team a"], None) == (
        'project in ("OPS", "WEB") AND labels = "q3" AND labels = "team a" ORDER BY key ASC')


def test_jql_wraps_the_box_jql_and_drops_its_order_by() -> None:
    assert build_jql(["OPS"], [], "status = Open OR priority = High order by rank DESC") == (
        'project in ("OPS") AND (status = Open OR priority = High) ORDER BY key ASC')


def test_jql_keeps_order_by_inside_a_quoted_string() -> None:
    jql = 'summary ~ "sort order by date"'
    assert build_jql(["OPS"], [], jql) == f'project in ("OPS") AND ({jql}) ORDER BY key ASC'


def test_jql_escapes_quotes_and_backslashes() -> None:
    assert build_jql(['A"B'], ["x\\y"], "  ") == (
        'project in ("A\\"B") AND labels = "x\\\\y" ORDER BY key ASC')


def test_jql_without_a_project_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one project"):
        build_jql([], ["q3"], "status = Open")


@pytest.mark.parametrize(("text", "epoch"), [
    ("2019-08-11T18:49:13.412-0700", 1565574553.412),
    ("2019-08-12T01:49:13.412+0000", 1565574553.412),
    ("2019-08-12T07:19:13.412+05:30", 1565574553.412),
    ("2019-08-12T01:49:13.412Z", 1565574553.412),
])
def test_jira_times_with_offsets(text: str, epoch: float) -> None:
    assert parse_jira_time(text) == pytest.approx(epoch)


@pytest.mark.parametrize("value", [None, 1565574553412, "", "yesterday",
                                   "2019-08-12T01:49:13.412"])
def test_unreadable_or_zoneless_jira_times(value: object) -> None:
    assert parse_jira_time(value) is None


def test_adf_paragraphs_lists_and_inline_nodes_become_lines() -> None:
    document = {"type": "doc", "version": 1, "content": [
        {"type": "heading", "attrs": {"level": 2}, "content": [{"type": "text", "text": "Goal"}]},
        {"type": "paragraph", "content": [
            {"type": "text", "text": "Ask "}, {"type": "mention", "attrs": {"text": "@Ann"}},
            {"type": "hardBreak"}, {"type": "text", "text": "today "},
            {"type": "emoji", "attrs": {"shortName": ":smile:"}}]},
        {"type": "bulletList", "content": [
            {"type": "listItem", "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "one"}]}]},
            {"type": "listItem", "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "two"}]}]}]},
        {"type": "rule"},
        {"type": "paragraph", "content": []},
        {"type": "codeBlock", "content": [{"type": "text", "text": "x = 1"}]}]}
    assert adf_to_text(document) == "Goal\nAsk @Ann\ntoday :smile:\none\ntwo\nx = 1"


@pytest.mark.parametrize("document", [None, {}, {"type": "doc", "content": []},
                                      {"type": "doc", "content": [{"type": "paragraph"}]}])
def test_an_empty_adf_document_is_no_description(document: object) -> None:
    assert adf_to_text(document) is None


def test_credentials_pick_the_deployment_and_stay_out_of_repr() -> None:
    cloud = JiraSource("https://acme.atlassian.net/", email="a@b.c",
                       api_token=SecretStr("tok-123"))
    center = JiraSource("https://jira.corp.example", pat="pat-456")
    assert (cloud.deployment, cloud.site, cloud.base_url) == (
        "cloud", "acme.atlassian.net", "https://acme.atlassian.net")
    assert center.deployment == "datacenter"
    assert "tok-123" not in repr(cloud) and "pat-456" not in repr(center)


@pytest.mark.parametrize("options", [{}, {"email": "a@b.c"}, {"api_token": "t"},
                                     {"email": "a@b.c", "api_token": "t", "pat": "p"}])
def test_missing_or_mixed_credentials_are_refused(options: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="BOXSYNC_JIRA"):
        JiraSource("https://acme.atlassian.net", **options)  # type: ignore[arg-type]


def test_backoff_doubles_up_to_the_cap_and_jitter_stays_below_it() -> None:
    policy = RetryPolicy(jitter=False)
    assert [policy.backoff(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    jittered = RetryPolicy()
    assert all(0.25 <= jittered.backoff(1) <= 0.5 for _ in range(50))


def test_retry_after_as_seconds_or_an_http_date() -> None:
    def clock() -> float:
        return 1_700_000_000.0

    assert _retry_after_seconds("2", clock) == 2.0
    assert _retry_after_seconds("Tue, 14 Nov 2023 22:13:30 GMT", clock) == 10.0
    assert _retry_after_seconds("soon", clock) is None
    assert _retry_after_seconds(None, clock) is None
