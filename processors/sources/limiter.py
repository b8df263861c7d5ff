"""The client-side limiter of one source and credential (wiring around
processors.sources.limits, which decides).

`Limiter.gate(call)` gives the HTTP client what it asks before each try (`before`: sleep
until the call's buckets allow it) and tells after it (`after`: count the outcome; on a 429,
block the class it names and say how long until the retry; on success, settle Jira's points
by the objects returned).

Where the buckets live is a `LimitStore`: `MemoryLimitStore` in one process (tests, the
CLI without a database), `processors.store.source_limits.PgLimitStore` in PostgreSQL, so that
every stage process of a worker, and every worker of the tenant that uses the same
credential, takes from the same buckets. Bucket keys name the source, the site or API, and a
fingerprint of the credential (never the credential itself).

A wait longer than `max_wait` (a quota blocked for most of an hour) is not slept through:
the call fails `SourceUnavailable`, and the run with it, to be run again later, rather than
hold the sync process; the block stays recorded, so nobody else knocks early meanwhile.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from processors.metrics import Metrics
from processors.sources.limits import (
    BURST_FRACTION,
    Bucket,
    Call,
    Decision,
    Limit,
    Need,
    blocked,
    decide,
    jira_throttle,
    needs,
    points,
    settle,
    trello_throttle,
)
from processors.sources.model import SourceUnavailable

T = TypeVar("T")
Step = Callable[[dict[str, Bucket | None], float], tuple[dict[str, Bucket], T]]


class LimitStore(Protocol):
    def transact(self, keys: Sequence[str], step: Step[T]) -> T:
        """Lock the buckets `keys`, call `step(buckets, now)`, store the buckets it returns,
        release; return step's second value. `now` is the store's clock (PostgreSQL's, so
        that workers on several hosts agree)."""
        ...


class MemoryLimitStore:
    """Buckets in this process's memory, behind one lock."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._buckets: dict[str, Bucket] = {}
        self._lock = threading.Lock()

    def transact(self, keys: Sequence[str], step: Step[T]) -> T:
        with self._lock:
            changed, result = step({key: self._buckets.get(key) for key in keys}, self._clock())
            self._buckets.update(changed)
            return result

    def snapshot(self) -> dict[str, Bucket]:
        with self._lock:
            return dict(self._buckets)


def fingerprint(secret: str) -> str:
    """12 hex digits of the credential's SHA-256: tells credentials apart, reveals nothing."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


class Limiter:
    """The buckets of one source and credential; see the module docstring."""

    def __init__(self, source: str, identity: str, store: LimitStore,
                 limits: Mapping[str, Limit], *, fraction: float = BURST_FRACTION,
                 max_wait: float = 120.0, metrics: Metrics | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 identities: Mapping[str, str] | None = None) -> None:
        self.source = source
        self.identity = identity  # e.g. jira:acme.atlassian.net:<fingerprint>
        # Buckets of another credential than `identity`'s, by limit kind: Trello's key
        # bucket is the API key's, shared by every token of that key.
        self._identities = dict(identities or {})
        self._store = store
        self._limits = dict(limits)
        self._fraction = fraction
        self._max_wait = max_wait
        self._metrics = metrics
        self._sleep = sleep

    def gate(self, call: Call) -> Gate:
        return Gate(self, call)

    def acquire(self, call: Call) -> None:
        """Sleep until the call's buckets let it go, then take from them."""
        wanted = needs(call, self._limits)
        keys = [self._key(need) for need in wanted]
        while True:
            decision = self._store.transact(keys, lambda current, now: self._decide(
                current, wanted, call, now))
            if decision.wait <= 0:
                return
            if decision.wait > self._max_wait:
                raise SourceUnavailable(
                    f"{self.source.capitalize()} is rate limited ({decision.reason}) for "
                    f"{decision.wait:.0f} s more; run the sync again after that", status=429)
            if self._metrics is not None:
                self._metrics.source_throttled_seconds.labels(
                    self.source, decision.reason or "throttled").inc(decision.wait)
            self._sleep(decision.wait)

    def throttled(self, call: Call, headers: Mapping[str, str], payload: bytes) -> float:
        """A 429: block its class (never retry early); the seconds until the retry may go."""
        wanted = needs(call, self._limits)

        def step(current: dict[str, Bucket | None], now: float
                 ) -> tuple[dict[str, Bucket], float]:
            throttle = (jira_throttle(headers, call, now, self._limits) if call.source == "jira"
                        else trello_throttle(headers, payload, call, now, self._limits))
            hit = [need for need in wanted if need.kind in throttle.kinds]
            changed = {self._key(need): blocked(current.get(self._key(need)), need.limit,
                                                throttle, now, self._fraction) for need in hit}
            return changed, max(0.0, throttle.until - now)

        return self._store.transact([self._key(need) for need in wanted], step)

    def settle(self, call: Call, returned: int) -> None:
        """Jira reads: charge the points of the objects returned beyond the estimate (or
        give back those below it); counts them in the points metric either way."""
        if call.source != "jira":
            return
        spent = points(call, returned)
        if self._metrics is not None:
            self._metrics.source_points.labels(self.source).inc(spent)
        extra = spent - points(call)
        if extra == 0:
            return
        quota = next(need for need in needs(call, self._limits) if need.kind == "quota")
        key = self._key(quota)
        self._store.transact([key], lambda current, now: (
            {key: settle(current.get(key), quota.limit, extra, now, self._fraction)}, None))

    def count(self, call: Call, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.source_requests.labels(self.source, call.endpoint, outcome).inc()

    def _decide(self, current: dict[str, Bucket | None], wanted: list[Need], call: Call,
                now: float) -> tuple[dict[str, Bucket], Decision]:
        keyed = {need.key: current.get(self._key(need)) for need in wanted}
        decision = decide(keyed, wanted, call.priority, now, self._fraction)
        # Only a call that goes writes its buckets back: a waiting one took nothing.
        changed = ({self._key(need): decision.buckets[need.key] for need in wanted}
                   if decision.wait <= 0 else {})
        return changed, decision

    def _key(self, need: Need) -> str:
        return f"{self._identities.get(need.kind, self.identity)}:{need.key}"


def jira_limiter(site: str, credential: str, deployment: str, store: LimitStore,
                 limits: Mapping[str, Limit], **options: Any) -> Limiter:
    """The limiter of a Jira site and credential; Data Center has no points quota (its
    admins set per-user limits, told by its 429s), so only the burst buckets pace it."""
    chosen = {name: limit for name, limit in limits.items()
              if deployment == "cloud" or name != "jira.quota"}
    return Limiter("jira", f"jira:{site}:{fingerprint(credential)}", store, chosen, **options)


def trello_limiter(key: str, token: str, store: LimitStore, limits: Mapping[str, Limit],
                   **options: Any) -> Limiter:
    """The limiter of a Trello key and token: the key's bucket is shared by its tokens."""
    return Limiter("trello", f"trello:{fingerprint(token)}", store, limits,
                   identities={"key": f"trello:{fingerprint(key)}"}, **options)


class Gate:
    """One call's passage through its limiter, as the HTTP client drives it."""

    def __init__(self, limiter: Limiter, call: Call) -> None:
        self.limiter = limiter
        self.call = call

    def before(self) -> None:
        self.limiter.acquire(self.call)

    def after(self, status: int | None, headers: Mapping[str, str], payload: bytes,
              answer: Any = None) -> float | None:
        """Count the try; for a 429 the seconds until the retry may go, else None."""
        if status is None:
            self.limiter.count(self.call, "no_answer")
            return None
        if status == 429:
            self.limiter.count(self.call, "throttled")
            return self.limiter.throttled(self.call, headers, payload)
        if 200 <= status < 300:
            self.limiter.count(self.call, "ok")
            self.limiter.settle(self.call, objects_in(answer))
            return None
        self.limiter.count(self.call, "error")
        return None


def objects_in(answer: Any) -> int:
    """How many objects an answer returned: a list's length, or that of its `issues` or
    `values` list (Jira's search and paged resources); 0 for anything else."""
    if isinstance(answer, list):
        return len(answer)
    if isinstance(answer, dict):
        for name in ("issues", "values"):
            if isinstance(answer.get(name), list):
                return len(answer[name])
    return 0
