"""The limiter's pure decisions (processors.sources.limits) and its wiring over the in-memory
store (processors.sources.limiter), with time injected: no I/O, no sleeping."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from processors.metrics import Metrics
from processors.sources.limiter import MemoryLimitStore, jira_limiter, trello_limiter
from processors.sources.limits import (
    DEFAULT_LIMITS,
    Bucket,
    Call,
    Limit,
    Need,
    Priority,
    blocked,
    decide,
    jira_throttle,
    needs,
    parse_limits,
    points,
    refilled,
    retry_after,
    settle,
    trello_throttle,
)
from processors.sources.model import SourceUnavailable

T0 = 1_800_000_000.0
SEARCH = Call("jira", "search", "GET", Priority.FULL, objects=100)


def test_a_bucket_never_lets_more_than_the_limit_through_in_any_window() -> None:
    limit = Limit(100, 10)
    need = [Need("token", "token", limit, 1.0)]
    state: dict[str, Bucket | None] = {"token": None}
    sent: list[float] = []
    now = T0
    while now < T0 + 60:
        decision = decide(state, need, Priority.WRITE_BACK, now)
        if decision.wait == 0:
            state = dict(decision.buckets)
            sent.append(now)
        else:
            now += decision.wait
            continue
        now += 0.001  # callers as fast as they can
    for start in sent:
        assert sum(1 for moment in sent if start <= moment < start + 10) <= 100
    # ... and uses 90 % of it over time (the 10 % burst fraction is its price).
    assert len(sent) >= 0.9 * 100 * 6


def test_capacity_and_rate_follow_the_burst_fraction() -> None:
    limit = Limit(300, 10)
    assert limit.capacity() == 30
    assert limit.rate() == pytest.approx(27.0)
    assert limit.capacity(0.5) + limit.rate(0.5) * limit.window == pytest.approx(300)


def test_a_full_sync_leaves_a_reserve_that_a_write_back_still_finds() -> None:
    limit = Limit(100, 10)  # capacity 10
    state: dict[str, Bucket | None] = {"b": Bucket(3.0, T0)}
    need = [Need("b", "token", limit, 1.0)]
    full = decide(state, need, Priority.FULL, T0)
    assert full.wait > 0 and full.reason == "client_token"  # below its 25 % reserve
    assert full.buckets["b"].tokens == 3.0  # nothing taken
    write = decide(state, need, Priority.WRITE_BACK, T0)
    assert write.wait == 0 and write.buckets["b"].tokens == 2.0
    incremental = decide(state, need, Priority.INCREMENTAL, T0)
    assert incremental.wait == 0  # 10 % reserve: 1 token


def test_a_call_takes_from_all_its_buckets_or_from_none() -> None:
    quota, burst = Limit(10_000, 3600), Limit(10, 1)  # capacities 1000 and 1
    state: dict[str, Bucket | None] = {"q": Bucket(500.0, T0), "b": Bucket(0.0, T0)}
    wanted = [Need("q", "quota", quota, 101.0), Need("b", "burst", burst, 1.0)]
    decision = decide(state, wanted, Priority.WRITE_BACK, T0)
    assert decision.wait == pytest.approx(1 / 9)  # the burst bucket refills at 9/s
    assert decision.reason == "client_burst"
    later = decide(state, wanted, Priority.WRITE_BACK, T0 + decision.wait)
    assert later.wait == 0
    assert later.buckets["q"].tokens == pytest.approx(500 - 101 + later.wait, abs=1)


def test_a_cost_above_the_capacity_passes_when_full_and_leaves_a_debt() -> None:
    limit = Limit(100, 3600)  # capacity 10
    decision = decide({}, [Need("q", "quota", limit, 101.0)], Priority.FULL, T0)
    assert decision.wait == 0
    assert decision.buckets["q"].tokens == pytest.approx(-91.0)
    nxt = decide(dict(decision.buckets), [Need("q", "quota", limit, 1.0)], Priority.FULL, T0)
    assert nxt.wait == pytest.approx((91 + 2.5 + 1) / limit.rate())


def test_jira_points_are_a_base_point_plus_objects_for_reads_only() -> None:
    assert points(SEARCH) == 101
    assert points(SEARCH, returned=7) == 8
    write = Call("jira", "issue", "PUT", Priority.WRITE_BACK, objects=50, issue="10001")
    assert points(write) == 1


def test_needs_of_jira_and_trello_calls() -> None:
    limits = dict(DEFAULT_LIMITS)
    assert [(n.key, n.cost) for n in needs(SEARCH, limits)] == [
        ("quota", 101), ("burst:GET search", 1)]
    write = Call("jira", "issue", "PUT", Priority.WRITE_BACK, issue="10001")
    assert [n.key for n in needs(write, limits)] == ["quota", "burst:PUT issue", "issue:10001"]
    assert [n.key for n in needs(Call("trello", "members"), limits)] == [
        "key", "token", "members"]
    without_quota = {k: v for k, v in limits.items() if k != "jira.quota"}
    assert [n.key for n in needs(SEARCH, without_quota)] == ["burst:GET search"]


@pytest.mark.parametrize(("reason", "kinds"), [
    ("jira-burst-based", ("burst",)),
    ("jira-quota-tenant-based", ("quota", "burst")),
    ("jira-quota-global-based", ("quota", "burst")),
    ("", ("quota", "burst")),
])
def test_jira_429_reasons_block_their_class(reason: str, kinds: tuple[str, ...]) -> None:
    throttle = jira_throttle({"ratelimit-reason": reason, "retry-after": "7"}, SEARCH, T0,
                             DEFAULT_LIMITS)
    assert throttle.kinds == kinds
    assert throttle.until == pytest.approx(T0 + 7.05)
    assert throttle.reason == (reason or "jira-unspecified")


def test_a_per_issue_429_blocks_that_issue_only() -> None:
    write = Call("jira", "issue", "PUT", Priority.WRITE_BACK, issue="10001")
    throttle = jira_throttle({"ratelimit-reason": "jira-per-issue-on-write",
                              "retry-after": "2"}, write, T0, DEFAULT_LIMITS)
    assert throttle.kinds == ("issue_write",)


def test_retry_after_and_rate_limit_reset() -> None:
    assert retry_after({"retry-after": "3"}, T0) == 3
    assert retry_after({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"},
                       1_792_567_670.0) == pytest.approx(10)
    assert retry_after({"x-ratelimit-reset": "2027-01-15T08:00Z"},
                       1_800_000_000.0) == pytest.approx(1_800_000_000 - 1_800_000_000 + 0)
    assert retry_after({}, T0) is None
    assert retry_after({"x-ratelimit-reset": "soon"}, T0) is None


def test_a_jira_429_without_retry_after_waits_the_reset_or_the_window() -> None:
    no_header = jira_throttle({"ratelimit-reason": "jira-quota-tenant-based"}, SEARCH, T0,
                              DEFAULT_LIMITS)
    assert no_header.until == pytest.approx(T0 + 3600.05)
    burst = jira_throttle({"ratelimit-reason": "jira-burst-based"}, SEARCH, T0, DEFAULT_LIMITS)
    assert burst.until == pytest.approx(T0 + 1.05)


@pytest.mark.parametrize(("body", "endpoint", "kind", "window"), [
    (b'{"error":"API_KEY_LIMIT_EXCEEDED","message":"..."}', "board_cards", "key", 10),
    (b'{"error":"API_TOKEN_LIMIT_EXCEEDED"}', "board_cards", "token", 10),
    (b"", "members", "members", 900),
    (b"rate limited", "board_cards", "token", 10),
])
def test_trello_429_bodies_block_their_class_for_the_whole_window(
        body: bytes, endpoint: str, kind: str, window: float) -> None:
    throttle = trello_throttle({}, body, Call("trello", endpoint), T0, DEFAULT_LIMITS)
    assert throttle.kinds == (kind,)
    assert throttle.until == pytest.approx(T0 + window + 0.05)


def test_a_blocked_bucket_waits_until_the_end_then_refills_from_the_reserve() -> None:
    limit = Limit(50, 1)
    throttle = jira_throttle({"ratelimit-reason": "jira-burst-based", "retry-after": "2"},
                             SEARCH, T0, DEFAULT_LIMITS)
    bucket = blocked(Bucket(5.0, T0), limit, throttle, T0)
    need = [Need("b", "burst", limit, 1.0)]
    early = decide({"b": bucket}, need, Priority.WRITE_BACK, T0 + 1)
    assert early.wait == pytest.approx(1.05) and early.reason == "jira-burst-based"
    # Drained to the full syncs' reserve (1.25 of 5): a write-back goes at the end, a full
    # sync waits for its first token above the reserve.
    assert decide({"b": bucket}, need, Priority.WRITE_BACK, T0 + 2.05).wait == 0
    at_end = decide({"b": bucket}, need, Priority.FULL, T0 + 2.05)
    assert at_end.wait == pytest.approx(1 / 45)
    assert refilled(bucket, limit, T0 + 2.05 + 1).tokens == pytest.approx(5.0)
    assert blocked(Bucket(0.5, T0), limit, throttle, T0).tokens == 0.5  # never adds


def test_settle_charges_or_gives_back_the_difference() -> None:
    limit = Limit(1000, 10)
    assert settle(Bucket(50.0, T0), limit, 10, T0).tokens == 40
    assert settle(Bucket(50.0, T0), limit, -80, T0).tokens == 100  # capped at the capacity


def test_parse_limits_overrides_defaults_and_names_bad_entries() -> None:
    chosen = parse_limits("jira.quota=1000/60, trello.key=30/1s")
    assert chosen["jira.quota"] == Limit(1000, 60)
    assert chosen["trello.key"] == Limit(30, 1)
    assert chosen["trello.token"] == DEFAULT_LIMITS["trello.token"]
    with pytest.raises(ValueError, match=r"jira\.qota"):
        parse_limits("jira.qota=1/1")
    with pytest.raises(ValueError, match="COUNT/SECONDS"):
        Limit.parse("0/10")


# -- the limiter over the in-memory store ----------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = T0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_limiter_paces_calls_and_counts_the_waits() -> None:
    clock = Clock()
    metrics = Metrics.create(CollectorRegistry())
    limits = {**DEFAULT_LIMITS, "jira.burst": Limit(10, 1)}  # capacity 1, 9/s
    limiter = jira_limiter("acme.atlassian.net", "secret", "cloud", MemoryLimitStore(clock),
                           limits, metrics=metrics, sleep=clock.sleep)
    for _ in range(10):
        limiter.acquire(SEARCH)
    assert clock.now - T0 == pytest.approx(9 / 9, rel=0.01)
    waited = metrics.registry.get_sample_value(
        "boxsync_source_throttled_seconds_total", {"source": "jira", "reason": "client_burst"})
    assert waited == pytest.approx(1.0, rel=0.01)


def test_a_429_blocks_its_class_only() -> None:
    clock = Clock()
    store = MemoryLimitStore(clock)
    limiter = jira_limiter("acme.atlassian.net", "secret", "cloud", store, DEFAULT_LIMITS,
                           sleep=clock.sleep)
    wait = limiter.throttled(SEARCH, {"ratelimit-reason": "jira-burst-based",
                                      "retry-after": "5"}, b"")
    assert wait == pytest.approx(5.05)
    other = Call("jira", "webhook", "GET", Priority.INCREMENTAL)
    limiter.acquire(other)
    assert clock.slept == []  # another endpoint goes at once
    limiter.acquire(SEARCH)
    assert sum(clock.slept) >= 5.05  # never early


def test_a_long_block_fails_rather_than_holding_the_run() -> None:
    clock = Clock()
    limiter = jira_limiter("acme.atlassian.net", "secret", "cloud", MemoryLimitStore(clock),
                           DEFAULT_LIMITS, sleep=clock.sleep, max_wait=60)
    limiter.throttled(SEARCH, {"ratelimit-reason": "jira-quota-tenant-based",
                               "retry-after": "1800"}, b"")
    with pytest.raises(SourceUnavailable, match="jira-quota-tenant-based"):
        limiter.acquire(SEARCH)


def test_trello_key_bucket_is_shared_by_tokens_and_bucket_names_hide_secrets() -> None:
    clock = Clock()
    store = MemoryLimitStore(clock)
    first = trello_limiter("the-key", "token-one", store, DEFAULT_LIMITS, sleep=clock.sleep)
    second = trello_limiter("the-key", "token-two", store, DEFAULT_LIMITS, sleep=clock.sleep)
    first.throttled(Call("trello", "board_cards"), {}, b'{"error":"API_KEY_LIMIT_EXCEEDED"}')
    second.acquire(Call("trello", "board_cards"))
    assert sum(clock.slept) >= 10  # the key's block holds for the other token too
    names = " ".join(store.snapshot())
    assert "the-key" not in names and "token-one" not in names


def test_points_are_settled_by_the_objects_returned() -> None:
    clock = Clock()
    store = MemoryLimitStore(clock)
    metrics = Metrics.create(CollectorRegistry())
    limiter = jira_limiter("acme.atlassian.net", "secret", "cloud", store, DEFAULT_LIMITS,
                           metrics=metrics, sleep=clock.sleep)
    limiter.acquire(SEARCH)
    limiter.settle(SEARCH, 40)  # the last page: 40 of the 100 estimated
    quota = next(b for k, b in store.snapshot().items() if k.endswith(":quota"))
    assert quota.tokens == pytest.approx(DEFAULT_LIMITS["jira.quota"].capacity() - 41)
    assert metrics.registry.get_sample_value(
        "boxsync_source_points_total", {"source": "jira"}) == 41


def test_data_center_has_no_quota_bucket() -> None:
    clock = Clock()
    store = MemoryLimitStore(clock)
    limiter = jira_limiter("jira.example.com", "pat", "datacenter", store, DEFAULT_LIMITS,
                           sleep=clock.sleep)
    limiter.acquire(SEARCH)
    assert [k.rsplit(":", 1)[1] for k in store.snapshot()] == ["GET search"]
