"""The limiter on the wire: the REST sources against the local Jira/Trello server
(`tests/support/fake_sources.py`) made to answer 429 with each of Jira's `RateLimit-Reason`s
and Trello's error bodies.

Real HTTP, virtual time: the limiter and the HTTP client share a clock that only moves when
they sleep, so "never early" and "that class only" are exact and the tests take milliseconds.
No Kafka or PostgreSQL is needed (the buckets are in memory; the PostgreSQL store has its own
test in test_source_limits_pg.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from processors.metrics import Metrics
from processors.sources import HttpClient, JiraSource, RetryPolicy, SourceUnavailable, TrelloSource
from processors.sources.limiter import Limiter, MemoryLimitStore, jira_limiter, trello_limiter
from processors.sources.limits import DEFAULT_LIMITS, Call, Limit, Priority
from tests.support.fake_sources import FakeSources, jira_issue, object_id, trello_card

T0 = 1_800_000_000.0
SEARCH = "/rest/api/3/search/jql"
COUNT = "/rest/api/3/search/approximate-count"


class Clock:
    """Virtual time: `sleep` moves it."""

    def __init__(self) -> None:
        self.now = T0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def fake() -> Iterator[FakeSources]:
    with FakeSources() as server:
        server.issues = [jira_issue(10000 + n, f"OPS-{n}", summary=f"Task {n}",
                                    updated="2025-03-01T10:00:00.000+0000")
                         for n in range(1, 6)]
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics.create(CollectorRegistry())


def jira(fake: FakeSources, clock: Clock, metrics: Metrics, store: MemoryLimitStore | None = None,
         **limits: Limit) -> JiraSource:
    http = HttpClient(policy=RetryPolicy(jitter=False), timeout=2.0, sleep=clock.sleep)
    source = JiraSource(fake.url, email=fake.jira_email, api_token=fake.jira_api_token,
                        http=http, page_size=5)
    chosen = {**DEFAULT_LIMITS, **{name.replace("_", ".", 1): v for name, v in limits.items()}}
    source.limiter = jira_limiter(source.site, source.credential, source.deployment,
                                  store or MemoryLimitStore(clock), chosen, metrics=metrics,
                                  sleep=clock.sleep)
    return source


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def put_issue(source: JiraSource, issue: str) -> Any:
    return source.request("PUT", f"/rest/api/3/issue/{issue}", endpoint="issue",
                          priority=Priority.WRITE_BACK, body={"fields": {"summary": "x"}},
                          issue=issue)


def search(source: JiraSource) -> Any:
    return source.request("GET", SEARCH, endpoint="search", params={"jql": 'project in ("OPS")'})


def count(source: JiraSource) -> Any:
    return source.request("POST", COUNT, endpoint="count", body={"jql": 'project in ("OPS")'})


# -- Jira --------------------------------------------------------------------------------------

def test_a_burst_429_is_retried_after_retry_after_and_counted(
        fake: FakeSources, clock: Clock, metrics: Metrics) -> None:
    # 1: approximate count, 2: the page → 429 burst, 3: the page again.
    fake.fail(2, 429, headers={"Retry-After": "2", "RateLimit-Reason": "jira-burst-based"})

    tasks = [t for page in jira(fake, clock, metrics).iter_pages(["OPS"]) for t in page.tasks]

    assert len(tasks) == 5 and len(fake.requests) == 3
    # The retry waits Retry-After (and a margin: never early), then, a full sync, for its
    # first token above the reserve the bucket was drained to (no burst into a source that
    # just said no).
    assert clock.slept[0] == pytest.approx(2.05, abs=0.001)
    assert clock.now - T0 == pytest.approx(2.05 + 1 / 45, abs=0.001)
    assert sample(metrics, "boxsync_source_requests_total", source="jira",
                  endpoint_class="search", outcome="throttled") == 1
    assert sample(metrics, "boxsync_source_requests_total", source="jira",
                  endpoint_class="search", outcome="ok") == 1
    assert sample(metrics, "boxsync_source_requests_total", source="jira",
                  endpoint_class="count", outcome="ok") == 1
    assert sample(metrics, "boxsync_source_throttled_seconds_total", source="jira",
                  reason="jira-burst-based") == pytest.approx(2.05, abs=0.01)
    # A count is a POST: its base point; the page: a point and one per issue returned.
    assert sample(metrics, "boxsync_source_points_total", source="jira") == 1 + 6


def test_a_burst_429_stalls_that_endpoint_only(
        fake: FakeSources, clock: Clock, metrics: Metrics) -> None:
    source = jira(fake, clock, metrics)
    fake.fail(1, 429, headers={"Retry-After": "600", "RateLimit-Reason": "jira-burst-based"})

    with pytest.raises(SourceUnavailable, match="600 s"):
        search(source)
    assert count(source) == {"count": 5}  # another endpoint goes at once
    assert put_issue(source, "10001") is None
    with pytest.raises(SourceUnavailable, match="jira-burst-based"):
        search(source)  # still blocked: refused here, not sent
    assert [r.path for r in fake.requests] == [SEARCH, COUNT, "/rest/api/3/issue/10001"]
    assert clock.slept == []


def test_a_per_issue_429_stalls_writes_to_that_issue_only(
        fake: FakeSources, clock: Clock, metrics: Metrics) -> None:
    source = jira(fake, clock, metrics)
    fake.fail(1, 429, headers={"Retry-After": "600",
                               "RateLimit-Reason": "jira-per-issue-on-write"})

    with pytest.raises(SourceUnavailable):
        put_issue(source, "10001")
    assert put_issue(source, "10002") is None  # another issue
    assert search(source)["issues"]  # reads
    with pytest.raises(SourceUnavailable, match="jira-per-issue-on-write"):
        put_issue(source, "10001")
    assert [r.path for r in fake.requests] == [
        "/rest/api/3/issue/10001", "/rest/api/3/issue/10002", SEARCH]


def test_a_quota_429_stalls_every_call_until_the_reset(
        fake: FakeSources, clock: Clock, metrics: Metrics) -> None:
    source = jira(fake, clock, metrics)
    # No Retry-After: X-RateLimit-Reset, the top of the next hour here, says when.
    reset = datetime.fromtimestamp(T0 + 1800, UTC).strftime("%Y-%m-%dT%H:%MZ")
    fake.fail(1, 429, headers={"X-RateLimit-Reset": reset,
                               "RateLimit-Reason": "jira-quota-tenant-based"})

    with pytest.raises(SourceUnavailable):
        search(source)
    for call in (search, count, lambda s: put_issue(s, "10001")):
        with pytest.raises(SourceUnavailable, match="jira-quota-tenant-based"):
            call(source)
    assert len(fake.requests) == 1  # nobody knocked again
    clock.sleep(1800.05)
    assert count(source) == {"count": 5}  # after the reset, everything goes again
    assert len(fake.requests) == 2


def test_a_full_sync_paces_itself_below_the_burst_limit_without_a_429(
        fake: FakeSources, clock: Clock, metrics: Metrics) -> None:
    fake.issues = [jira_issue(10000 + n, f"OPS-{n}", updated="2025-03-01T10:00:00.000+0000")
                   for n in range(1, 31)]
    source = jira(fake, clock, metrics, jira_burst=Limit(10, 1))  # capacity 1, 9/s
    source.page_size = 1

    tasks = [t for page in source.iter_pages(["OPS"]) for t in page.tasks]

    assert len(tasks) == 30 and len(fake.requests) == 31  # count + 30 pages
    # The first search page goes from a full bucket, the other 29 at the refill rate.
    assert clock.now - T0 == pytest.approx(29 / 9, rel=0.02)
    assert sample(metrics, "boxsync_source_throttled_seconds_total", source="jira",
                  reason="client_burst") == pytest.approx(29 / 9, rel=0.02)
    assert sample(metrics, "boxsync_source_points_total", source="jira") == 1 + 30 * 2


def test_a_write_back_goes_first_while_a_full_sync_waits_for_its_reserve(
        fake: FakeSources, clock: Clock, metrics: Metrics) -> None:
    store = MemoryLimitStore(clock)
    source = jira(fake, clock, metrics, store, jira_burst=Limit(40, 1))  # capacity 4, 36/s
    limiter = source.limiter
    assert isinstance(limiter, Limiter)
    full = Call("jira", "issue", "PUT", Priority.FULL)
    for _ in range(3):  # a full sync drains the bucket down to its 25 % reserve
        limiter.acquire(full)
    assert clock.slept == []
    assert put_issue(source, "10001") is None  # the write-back finds its tokens at once
    assert clock.slept == []
    limiter.acquire(full)  # the full sync waits for the refill
    assert clock.slept and sum(clock.slept) == pytest.approx((1 + 1) / 36, rel=0.05)


# -- Trello ------------------------------------------------------------------------------------

def trello(fake: FakeSources, clock: Clock, metrics: Metrics, store: MemoryLimitStore,
           attempts: int = 5) -> TrelloSource:
    http = HttpClient(policy=RetryPolicy(attempts=attempts, jitter=False), timeout=2.0,
                      sleep=clock.sleep)
    source = TrelloSource(fake.url, key=fake.trello_key, token=fake.trello_token, http=http)
    source.limiter = trello_limiter(source.key, source.token, store, DEFAULT_LIMITS,
                                    metrics=metrics, sleep=clock.sleep)
    return source


@pytest.fixture
def board(fake: FakeSources) -> str:
    board_id = object_id(1_700_000_000, 1)
    fake.cards[board_id] = [trello_card(object_id(1_700_000_100, n), board_id, name=f"C{n}")
                            for n in range(1, 4)]
    return board_id


@pytest.mark.parametrize(("body", "reason", "other_token_waits"), [
    (b'{"error":"API_TOKEN_LIMIT_EXCEEDED","message":"Rate limit exceeded"}',
     "API_TOKEN_LIMIT_EXCEEDED", False),
    (b'{"error":"API_KEY_LIMIT_EXCEEDED","message":"Rate limit exceeded"}',
     "API_KEY_LIMIT_EXCEEDED", True),
])
def test_a_trello_429_waits_the_whole_window_for_its_key_or_token(
        fake: FakeSources, clock: Clock, metrics: Metrics, board: str, body: bytes,
        reason: str, other_token_waits: bool) -> None:
    store = MemoryLimitStore(clock)
    source = trello(fake, clock, metrics, store)
    fake.fail(1, 429, body=body)  # 1: the lists → 429, 2: the lists, 3: the cards

    tasks = [t for page in source.iter_pages([board]) for t in page.tasks]

    assert len(tasks) == 3 and len(fake.requests) == 3
    # Trello says nothing of when its window ends: the whole window, never less, then
    # the refill rate from an empty bucket.
    assert clock.slept[0] == pytest.approx(10.05, abs=0.001)
    assert all(wait < 1 for wait in clock.slept[1:])
    assert sample(metrics, "boxsync_source_throttled_seconds_total", source="trello",
                  reason=reason) == pytest.approx(10.05, abs=0.01)
    assert sample(metrics, "boxsync_source_requests_total", source="trello",
                  endpoint_class="board_lists", outcome="throttled") == 1



@pytest.mark.parametrize(("body", "other_token_waits"), [
    (b'{"error":"API_TOKEN_LIMIT_EXCEEDED","message":"Rate limit exceeded"}', False),
    (b'{"error":"API_KEY_LIMIT_EXCEEDED","message":"Rate limit exceeded"}', True),
])
def test_a_key_429_holds_every_token_of_the_key_and_a_token_429_its_own(
        fake: FakeSources, clock: Clock, metrics: Metrics, board: str, body: bytes,
        other_token_waits: bool) -> None:
    store = MemoryLimitStore(clock)
    source = trello(fake, clock, metrics, store, attempts=1)  # the 429 ends the call
    fake.fail(1, 429, body=body)
    with pytest.raises(SourceUnavailable):
        source.request("GET", f"/1/boards/{board}/lists", endpoint="board_lists")

    other = trello_limiter(fake.trello_key, "another-token", store, DEFAULT_LIMITS,
                           sleep=clock.sleep)
    other.acquire(Call("trello", "board_cards"))
    assert (clock.now - T0 >= 10) is other_token_waits
    source.limiter.acquire(Call("trello", "board_cards"))  # type: ignore[union-attr]
    assert clock.now - T0 >= 10  # its own token waits either way
