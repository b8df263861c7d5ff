"""The limiter's buckets in the real PostgreSQL (processors.store.source_limits): shared by
every process of a tenant (several stores on their own connections stand for several stage
processes and workers), never by two tenants, on the database's clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from processors.settings import Settings
from processors.sources.limiter import jira_limiter
from processors.sources.limits import DEFAULT_LIMITS, Bucket, Call, Limit, Need, Priority, decide
from processors.sources.model import SourceUnavailable
from processors.stack.postgres import resolve_database_url
from processors.store.source_limits import PgLimitStore

SEARCH = Call("jira", "search", "GET", Priority.FULL, objects=100)


@pytest.fixture
def stores(database_url: str) -> Iterator[Callable[[], PgLimitStore]]:
    made: list[PgLimitStore] = []

    def make() -> PgLimitStore:
        made.append(PgLimitStore(database_url))
        return made[-1]

    yield make
    for store in made:
        store.close()


def test_processes_sharing_a_bucket_never_take_more_than_it_holds(
        stores: Callable[[], PgLimitStore]) -> None:
    limit = Limit(100, 3600)  # capacity 10, refilling 0.025 a second
    need = [Need("shared", "token", limit, 1.0)]
    granted: list[int] = []
    started = time.time()

    def process() -> None:
        store = stores()
        mine = 0
        for _ in range(10):
            def step(current: dict[str, Bucket | None], now: float
                     ) -> tuple[dict[str, Bucket], bool]:
                decision = decide({"shared": current["jira:x:shared"]}, need,
                                  Priority.WRITE_BACK, now)
                if decision.wait > 0:
                    return {}, False
                return {"jira:x:shared": decision.buckets["shared"]}, True
            mine += store.transact(["jira:x:shared"], step)
        granted.append(mine)

    threads = [threading.Thread(target=process) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    refill = (time.time() - started) * limit.rate()
    assert len(granted) == 4
    assert 10 <= sum(granted) <= 10 + refill + 1e-9  # 40 asked, the bucket held 10


def test_a_429_seen_by_one_worker_holds_back_the_others(
        stores: Callable[[], PgLimitStore]) -> None:
    one = jira_limiter("acme.atlassian.net", "token", "cloud", stores(), DEFAULT_LIMITS)
    other = jira_limiter("acme.atlassian.net", "token", "cloud", stores(), DEFAULT_LIMITS,
                         max_wait=5)
    wait = one.throttled(SEARCH, {"ratelimit-reason": "jira-quota-tenant-based",
                                  "retry-after": "600"}, b"")
    assert wait == pytest.approx(600.05, abs=0.5)

    with pytest.raises(SourceUnavailable, match="jira-quota-tenant-based"):
        other.acquire(SEARCH)
    # Another credential on the same site has buckets of its own.
    jira_limiter("acme.atlassian.net", "another", "cloud", stores(), DEFAULT_LIMITS,
                 max_wait=5).acquire(SEARCH)


def test_buckets_are_the_tenants_own_and_on_the_database_clock(
        stores: Callable[[], PgLimitStore], own_topics: Callable[..., Settings]) -> None:
    jira_limiter("acme.atlassian.net", "token", "cloud", stores(), DEFAULT_LIMITS).throttled(
        SEARCH, {"ratelimit-reason": "jira-burst-based", "retry-after": "600"}, b"")
    elsewhere = PgLimitStore(resolve_database_url(own_topics()))
    try:
        jira_limiter("acme.atlassian.net", "token", "cloud", elsewhere, DEFAULT_LIMITS,
                     max_wait=5).acquire(SEARCH)  # another tenant: not blocked
        seen: dict[str, Bucket | None] = {}

        def look(current: dict[str, Bucket | None], now: float
                 ) -> tuple[dict[str, Bucket], float]:
            seen.update(current)
            return {}, now

        now = elsewhere.transact(["probe"], look)
        assert abs(now - time.time()) < 5  # epoch seconds of the database's clock
        assert seen == {"probe": None}  # a new bucket: full
    finally:
        elsewhere.close()
