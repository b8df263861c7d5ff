"""The REST task sources against a local server that answers like Jira and Trello.

Every test makes real HTTP requests to `tests/support/fake_sources.py` on 127.0.0.1; nothing
is patched. Retries wait through an injected `sleep` that only records, so the tests run in
milliseconds. No Kafka or PostgreSQL is needed (none of the integration fixtures is used).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from processors.sources import (
    HttpClient,
    JiraSource,
    RetryPolicy,
    SourceAuthFailed,
    SourcePage,
    SourceTask,
    SourceUnavailable,
    TrelloSource,
)
from processors.sources.trello import CARD_FIELDS
from tests.support.fake_sources import FakeSources, adf, jira_issue, object_id, trello_card

FIELD_MAP = {"customfield_10015": "start_date", "customfield_10016": "story_points"}
SEARCH_V3 = "/rest/api/3/search/jql"
SEARCH_V2 = "/rest/api/2/search"
STATUS_OPEN = {"name": "Open", "statusCategory": {"key": "new"}}


@pytest.fixture
def fake() -> Iterator[FakeSources]:
    with FakeSources() as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def http(sleeps: list[float]) -> HttpClient:
    """Retries as in production (5 tries, 0.5 s doubling) but sleeping only on paper."""
    return HttpClient(policy=RetryPolicy(jitter=False), timeout=2.0, sleep=sleeps.append)


def cloud(fake: FakeSources, http: HttpClient, **options: Any) -> JiraSource:
    return JiraSource(fake.url, email=fake.jira_email, api_token=fake.jira_api_token,
                      field_map=FIELD_MAP, http=http, **options)


def datacenter(fake: FakeSources, http: HttpClient, **options: Any) -> JiraSource:
    return JiraSource(fake.url, pat=fake.jira_pat, field_map=FIELD_MAP, http=http, **options)


def trello(fake: FakeSources, http: HttpClient, **options: Any) -> TrelloSource:
    return TrelloSource(fake.url, key=fake.trello_key, token=fake.trello_token, http=http,
                        **options)


def tasks_of(pages: Iterator[SourcePage]) -> list[SourceTask]:
    return [task for page in pages for task in page.tasks]


def ops_issue(number: int, **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "summary": f"Task {number}", "status": STATUS_OPEN,
        "assignee": {"accountId": f"acc-{number}", "displayName": "Ann"},
        "priority": {"name": "High"}, "duedate": "2025-04-0" + str(number % 9 + 1),
        "labels": ["q3", "team-a"], "parent": None, "issuelinks": [],
        "description": adf(f"First line of {number}", "Second line"),
        "updated": "2025-03-01T10:00:00.000+0000", "customfield_10016": 3,
        "customfield_99999": "not asked for"}
    values.update(fields)
    return jira_issue(10000 + number, f"OPS-{number}", **values)


# -- Jira Cloud ---------------------------------------------------------------------------

def test_cloud_search_pages_through_429_and_500_and_lists_every_issue_once(
        fake: FakeSources, http: HttpClient, sleeps: list[float]) -> None:
    fake.issues = [ops_issue(n) for n in range(1, 8)]
    fake.issues.append(jira_issue(20001, "WEB-1", labels=["q3", "team-a"],
                                  updated="2025-03-01T10:00:00.000+0000"))
    fake.issues.append(ops_issue(8, labels=["q3"]))  # lacks team-a: not selected
    # 1: approximate count, 2: page 1, 3: page 2 → 429, 4: page 2, 5: page 3 → 500, 6: page 3
    fake.fail(3, 429, headers={"Retry-After": "1"})
    fake.fail(5, 500)

    pages = list(cloud(fake, http, page_size=3).iter_pages(["OPS"], ["q3", "team-a"], None))

    assert [len(page.tasks) for page in pages] == [3, 3, 1]
    assert {page.total for page in pages} == {7}  # from approximate-count
    ids = [task.task_id for page in pages for task in page.tasks]
    assert ids == [f"jira:acme.atlassian.net:{10000 + n}" for n in range(1, 8)]
    assert sleeps == [1.0, 0.5]  # Retry-After honoured, then the first backoff step
    assert len(fake.requests) == 6


def test_cloud_task_has_normalized_fields_and_adf_description_as_text(
        fake: FakeSources, http: HttpClient) -> None:
    fake.issues = [ops_issue(1, customfield_10015="2025-02-01")]

    [task] = tasks_of(cloud(fake, http).iter_pages(["OPS"]))

    assert task == SourceTask(
        task_id="jira:acme.atlassian.net:10001", source="jira", source_key="OPS-1",
        project="OPS", updated_at=1740823200.0,
        fields={"summary": "Task 1", "status": "Open", "status_category": "new",
                "assignee": "acc-1", "priority": "High", "due_date": "2025-04-02",
                "labels": ["q3", "team-a"], "parent": None, "links": [],
                "description": "First line of 1\nSecond line", "start_date": "2025-02-01",
                "story_points": 3})


def test_cloud_sends_basic_auth_the_scope_jql_and_only_the_needed_fields(
        fake: FakeSources, http: HttpClient) -> None:
    fake.issues = [ops_issue(1)]

    tasks_of(cloud(fake, http, page_size=25).iter_pages(
        ["OPS", "WEB"], ["q3"], 'status != "Done" ORDER BY rank'))

    [count] = fake.requests_to("/rest/api/3/search/approximate-count")
    [search] = fake.requests_to(SEARCH_V3)
    basic = base64.b64encode(f"{fake.jira_email}:{fake.jira_api_token}".encode()).decode()
    assert search.headers["authorization"] == count.headers["authorization"] == f"Basic {basic}"
    where = 'project in ("OPS", "WEB") AND labels = "q3" AND (status != "Done")'
    assert search.params["jql"] == where + " ORDER BY key ASC"
    assert count.body == {"jql": where}
    assert search.params["fields"].split(",") == [
        "summary", "status", "assignee", "priority", "duedate", "labels", "parent",
        "issuelinks", "description", "project", "updated", "customfield_10015",
        "customfield_10016"]
    assert search.params["maxResults"] == "25"
    assert "nextPageToken" not in search.params


def test_cloud_total_is_none_when_the_count_endpoint_is_missing(
        fake: FakeSources, http: HttpClient) -> None:
    fake.issues = [ops_issue(1)]
    fake.fail(1, 404, body=b'{"errorMessages":["Not found"]}')

    pages = list(cloud(fake, http).iter_pages(["OPS"]))

    assert [page.total for page in pages] == [None]
    assert len(tasks_of(iter(pages))) == 1


def test_incremental_listing_asks_for_updated_only(fake: FakeSources, http: HttpClient) -> None:
    fake.issues = [ops_issue(1, updated="2019-08-11T18:49:13.412-0700"), ops_issue(2)]

    tasks = tasks_of(cloud(fake, http).iter_updated(["OPS"], ["q3"]))

    [search] = fake.requests_to(SEARCH_V3)
    assert search.params["fields"] == "updated"
    assert [(task.task_id, task.project, task.updated_at, task.fields) for task in tasks] == [
        ("jira:acme.atlassian.net:10001", "OPS", 1565574553.412, {}),
        ("jira:acme.atlassian.net:10002", "OPS", 1740823200.0, {})]


def test_a_messy_issue_still_normalizes(fake: FakeSources, http: HttpClient) -> None:
    fake.issues = [jira_issue(
        10077, "OPS-77", summary=None, status={"name": "In Progress"}, assignee=None,
        priority="High", duedate="2025-05-06T00:00:00", labels=["ok", 7, None],
        parent={"key": "OPS-1"}, description=None, customfield_10016="5.0",
        customfield_10015=None, updated="2025-03-01T12:00:00.000+0100")]

    [task] = tasks_of(cloud(fake, http).iter_pages(["OPS"]))

    assert task.task_id == "jira:acme.atlassian.net:10077"  # a numeric id, as a string
    assert task.updated_at == 1740826800.0
    assert task.fields == {
        "summary": None, "status": "In Progress", "assignee": None, "priority": None,
        "due_date": "2025-05-06", "labels": ["ok"], "parent": "OPS-1", "description": None,
        "start_date": None, "story_points": 5}


def test_an_issue_without_a_readable_updated_time_fails_the_listing(
        fake: FakeSources, http: HttpClient) -> None:
    fake.issues = [ops_issue(1, updated="yesterday")]

    with pytest.raises(SourceUnavailable, match="OPS-1 without a readable `updated`"):
        tasks_of(cloud(fake, http).iter_pages(["OPS"]))


def test_no_jira_project_means_no_request(fake: FakeSources, http: HttpClient) -> None:
    assert tasks_of(cloud(fake, http).iter_pages([], ["q3"], "x = y")) == []
    assert fake.requests == []


# -- Jira Data Center -----------------------------------------------------------------------

def test_datacenter_pages_by_start_at_with_bearer_auth(
        fake: FakeSources, http: HttpClient) -> None:
    fake.issues = [jira_issue(
        300 + n, f"DC-{n}", site="jira.corp.example", api=2, summary=f"DC {n}",
        description="wiki *text*", assignee={"key": "JIRAUSER10231", "name": "ann"},
        updated="2025-03-01T10:00:00.000+0000") for n in range(1, 6)]
    fake.max_results_cap = 2  # the server returns fewer than asked: paging must follow it

    pages = list(datacenter(fake, http, page_size=3).iter_pages(["DC"]))

    searches = fake.requests_to(SEARCH_V2)
    assert [request.params["startAt"] for request in searches] == ["0", "2", "4"]
    assert {request.headers["authorization"] for request in searches} == {
        f"Bearer {fake.jira_pat}"}
    assert fake.requests_to(SEARCH_V3) == []
    assert [page.total for page in pages] == [5, 5, 5]
    tasks = tasks_of(iter(pages))
    assert [task.task_id for task in tasks] == [f"jira:jira.corp.example:{300 + n}"
                                                for n in range(1, 6)]
    assert tasks[0].fields["description"] == "wiki *text*"
    assert tasks[0].fields["assignee"] == "JIRAUSER10231"


# -- failures ---------------------------------------------------------------------------

def test_401_is_auth_failed_at_once_and_names_the_settings_not_the_secret(
        fake: FakeSources, http: HttpClient, sleeps: list[float]) -> None:
    fake.issues = [ops_issue(1)]
    source = JiraSource(fake.url, email=fake.jira_email, api_token="wrong-token-value",
                        http=http)

    with pytest.raises(SourceAuthFailed) as raised:
        tasks_of(source.iter_pages(["OPS"]))

    error = raised.value
    assert error.reason == "source_auth_failed" and error.status == 401
    assert "BOXSYNC_JIRA_API_TOKEN" in str(error) and "wrong-token-value" not in str(error)
    assert "\n" not in str(error)
    assert len(fake.requests) == 1 and sleeps == []  # the count request; no retry


def test_500_forever_is_unavailable_after_the_last_try(
        fake: FakeSources, http: HttpClient, sleeps: list[float]) -> None:
    fake.fail_always(503)

    with pytest.raises(SourceUnavailable) as raised:
        tasks_of(datacenter(fake, http).iter_pages(["OPS"]))

    error = raised.value
    assert error.reason == "source_unavailable" and error.status == 503
    assert str(error) == ("Jira did not answer GET /rest/api/2/search after 5 tries "
                          "(last: HTTP 503); run the sync again later")
    assert sleeps == [0.5, 1.0, 2.0, 4.0]
    assert len(fake.requests) == 5


def test_dropped_connections_and_429_without_retry_after_back_off(
        fake: FakeSources, http: HttpClient, sleeps: list[float]) -> None:
    fake.issues = [ops_issue(1)]
    fake.drop(1)
    fake.fail(2, 429, body=b'{"error":"API_TOKEN_LIMIT_EXCEEDED"}')

    tasks = tasks_of(datacenter(fake, http).iter_pages(["OPS"]))

    assert len(tasks) == 1
    assert sleeps == [0.5, 1.0]


def test_a_timeout_is_retried(fake: FakeSources, sleeps: list[float]) -> None:
    fake.issues = [ops_issue(1)]
    fake.stall(1, 0.3)
    http = HttpClient(policy=RetryPolicy(jitter=False), timeout=0.1, sleep=sleeps.append)

    tasks = tasks_of(datacenter(fake, http).iter_pages(["OPS"]))

    assert len(tasks) == 1 and sleeps == [0.5] and len(fake.requests) == 2


def test_a_long_retry_after_fails_at_once(
        fake: FakeSources, http: HttpClient, sleeps: list[float]) -> None:
    fake.fail_always(429, headers={"Retry-After": "3600"})

    with pytest.raises(SourceUnavailable, match=r"rate limiting .* for 3600 s"):
        tasks_of(datacenter(fake, http).iter_pages(["OPS"]))
    assert sleeps == [] and len(fake.requests) == 1


def test_a_bad_request_is_unavailable_with_the_status_and_jira_message(
        fake: FakeSources, http: HttpClient) -> None:
    fake.fail_always(400, body=b'{"errorMessages":["Field \'bogus\' does not exist."]}')

    with pytest.raises(SourceUnavailable) as raised:
        tasks_of(datacenter(fake, http).iter_pages(["OPS"], [], "bogus = 1"))

    assert raised.value.status == 400
    assert str(raised.value) == (
        "Jira answered HTTP 400 to GET /rest/api/2/search: Field 'bogus' does not exist.; "
        "check BOXSYNC_JIRA_BASE_URL and the box scope (projects, labels, JQL)")
    assert len(fake.requests) == 1


def test_an_answer_that_is_not_json_is_unavailable_without_retry(
        fake: FakeSources, http: HttpClient, sleeps: list[float]) -> None:
    fake.fail_always(200, body=b"<html>login page</html>")

    with pytest.raises(SourceUnavailable, match="not JSON"):
        tasks_of(datacenter(fake, http).iter_pages(["OPS"]))
    assert sleeps == [] and len(fake.requests) == 1


# -- Trello -------------------------------------------------------------------------------

BOARD = "5f1e0c0a0000000000000001"
DAY = 1_700_000_000


def trello_board(fake: FakeSources, count: int) -> list[str]:
    fake.lists[BOARD] = [{"id": "list-todo", "name": "To do"}, {"id": "list-done", "name": "Done"}]
    ids = [object_id(DAY + n, n) for n in range(count)]
    fake.cards[BOARD] = [trello_card(
        card_id, BOARD, name=f"Card {n}", idList="list-todo", closed=n == 0,
        labels=[{"id": "l1", "name": "q3", "color": "green"}, {"id": "l2", "name": "",
                                                              "color": "red"}])
        for n, card_id in enumerate(ids)]
    return ids


def test_trello_pages_with_before_and_sends_key_and_token(
        fake: FakeSources, http: HttpClient) -> None:
    ids = trello_board(fake, 7)

    pages = list(trello(fake, http, page_size=3).iter_pages([BOARD]))

    card_requests = fake.requests_to(f"/1/boards/{BOARD}/cards")
    assert [request.params.get("before") for request in card_requests] == [None, ids[4], ids[1]]
    for request in [*card_requests, *fake.requests_to(f"/1/boards/{BOARD}/lists")]:
        assert (request.params["key"], request.params["token"]) == (
            fake.trello_key, fake.trello_token)
    assert card_requests[0].params["fields"].split(",") == list(CARD_FIELDS)
    assert card_requests[0].params["filter"] == "all"
    assert [len(page.tasks) for page in pages] == [3, 3, 1]
    assert sorted(task.task_id for page in pages for task in page.tasks) == sorted(
        f"trello:{card_id}" for card_id in ids)


def test_trello_task_fields_match_the_create_card_rules(
        fake: FakeSources, http: HttpClient) -> None:
    [card_id] = trello_board(fake, 1)
    fake.cards[BOARD][0].update(desc="Do it\nsoon", due="2025-03-09T23:30:00.000Z")

    [task] = tasks_of(trello(fake, http).iter_pages([BOARD]))

    assert task == SourceTask(
        task_id=f"trello:{card_id}", source="trello", source_key=f"s{card_id[-7:]}",
        project=f"trello:{BOARD}", updated_at=1740823200.0,
        fields={"summary": "Card 0", "list": "To do", "description": "Do it\nsoon",
                "due_date": "2025-03-09", "closed": True, "labels": ["q3", "red"]})


def test_trello_incremental_listing_asks_for_identity_and_time_only(
        fake: FakeSources, http: HttpClient) -> None:
    ids = trello_board(fake, 2)
    del fake.cards[BOARD][1]["dateLastActivity"]  # falls back to the id's creation second

    tasks = tasks_of(trello(fake, http).iter_updated([BOARD]))

    assert fake.requests_to(f"/1/boards/{BOARD}/lists") == []
    [request] = fake.requests_to(f"/1/boards/{BOARD}/cards")
    assert request.params["fields"] == "id,shortLink,idBoard,dateLastActivity"
    assert {task.task_id: (task.updated_at, task.fields) for task in tasks} == {
        f"trello:{ids[0]}": (1740823200.0, {}), f"trello:{ids[1]}": (float(DAY + 1), {})}


def test_trello_wrong_token_is_auth_failed_and_the_secret_stays_out(
        fake: FakeSources, http: HttpClient) -> None:
    trello_board(fake, 1)
    source = TrelloSource(fake.url, key=fake.trello_key, token="not-the-token", http=http)

    with pytest.raises(SourceAuthFailed) as raised:
        tasks_of(source.iter_pages([BOARD]))

    message = str(raised.value)
    assert message == (f"Trello refused the credentials (HTTP 401 to GET /1/boards/{BOARD}/lists);"
                       " check BOXSYNC_TRELLO_KEY and BOXSYNC_TRELLO_TOKEN, and that this member"
                       " can see the box's boards")


def test_trello_error_excerpts_never_echo_the_key_or_token(
        fake: FakeSources, http: HttpClient) -> None:
    trello_board(fake, 1)
    echo = f"bad request ?key={fake.trello_key}&token={fake.trello_token}".encode()
    fake.fail_always(400, body=echo)

    with pytest.raises(SourceUnavailable) as raised:
        tasks_of(trello(fake, http).iter_pages([BOARD]))

    message = str(raised.value)
    assert fake.trello_token not in message and fake.trello_key not in message
    assert "?key=***&token=***" in message
