"""Client-side rate limits of the task sources: pure decisions, time injected, no I/O.

**The model.** Each limit a source states as "at most N per window W" (Jira Cloud: the
hourly points quota, the per-second burst limit of each endpoint and method, the per-issue
write limit; Trello: 300 requests per 10 s per API key, 100 per 10 s per token, 100 per 900 s
to `/1/members/`) is a token bucket that holds at most `f·N` and refills at `(1 - f)·N/W`,
f being the burst fraction (0.1 by default). Such a bucket never lets more than N through in
any window of length W, wherever the window starts: it is safe against a source that counts
in fixed windows (Jira's quota resets at the top of the hour) and one that slides (Trello does
not say), at the price of 10 % of the allowed rate.

**A call** takes from every bucket that covers it (`needs`), all or nothing: Jira, from the
quota (1 point, plus a point per object a read returns, estimated before and settled after
the answer) and from its endpoint's burst bucket (and a write to an issue from that issue's
bucket); Trello, from the key's and the token's buckets (and `/1/members/` from its own).

**Priorities**: app write-backs first, incremental syncs, full syncs last. A priority may
not take a bucket below its reserve (0, 10 % and 25 % of the bucket), so while a full sync
paces itself at the refill rate, a write-back still finds tokens at once.

**A 429** blocks the buckets of its class until the source's `Retry-After` (else
`X-RateLimit-Reset`, else the limit's window) has passed, and empties them, so that
afterwards the class resumes at the refill rate, never early and never in a burst: Jira's
`jira-burst-based` stalls one endpoint, `jira-per-issue-on-write` one issue,
`jira-quota-*` (and anything unknown) every call; Trello's `API_KEY_LIMIT_EXCEEDED` every
call with the key, `API_TOKEN_LIMIT_EXCEEDED` (and an unexplained 429) those with the token,
and a 429 from `/1/members/` that endpoint. Trello sends no rate-limit headers, so its block
lasts the limit's whole window (after 200 429s on a key, Trello refuses everything for the
rest of the window: boxsync must not knock meanwhile).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import IntEnum
from typing import Literal

SourceName = Literal["jira", "trello"]


class Priority(IntEnum):
    """Who goes first when a bucket runs low (lower is more urgent)."""

    WRITE_BACK = 0
    INCREMENTAL = 1
    FULL = 2


# The part of a bucket each priority leaves to those above it.
RESERVE: Mapping[Priority, float] = {Priority.WRITE_BACK: 0.0, Priority.INCREMENTAL: 0.1,
                                     Priority.FULL: 0.25}
BURST_FRACTION = 0.1
# Waiting a little past the source's own time: clocks differ, and early is worse than late
# (Jira answers an early retry with a longer wait).
MARGIN_SECONDS = 0.05
# Epoch seconds near 1.8e9 are exact to about 2.4e-7 s only, so a bucket refilled for exactly
# the computed wait can fall a few millionths of a token short and ask for a wait that rounds
# to nothing, forever. A bucket counts as ready once it is within this much time of its
# tokens (a microsecond, far below anything a source can tell apart).
TIME_EPSILON = 1e-6
_LIMIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*s?\s*$")


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `count` per `window` seconds."""

    count: float
    window: float

    @classmethod
    def parse(cls, text: str) -> Limit:
        """`65000/3600` (or `65000/3600s`) → Limit(65000, 3600); ValueError otherwise."""
        match = _LIMIT.match(text)
        if not match or float(match.group(1)) <= 0 or float(match.group(2)) <= 0:
            raise ValueError(f"expected COUNT/SECONDS such as 100/10, got {text!r}")
        return cls(float(match.group(1)), float(match.group(2)))

    def capacity(self, fraction: float = BURST_FRACTION) -> float:
        return max(1.0, fraction * self.count)

    def rate(self, fraction: float = BURST_FRACTION) -> float:
        """Tokens per second, so that capacity + rate·window ≤ count."""
        return max(self.count - self.capacity(fraction), 1e-9) / self.window

    def __str__(self) -> str:
        return f"{self.count:g}/{self.window:g}"


# Atlassian's and Trello's published numbers (2026); settings override each by name.
DEFAULT_LIMITS: Mapping[str, Limit] = {
    # Tier 1 quota of an app: points per hour, shared by every call of the credential.
    "jira.quota": Limit(65_000, 3600),
    # Burst limit per endpoint and method; reads and writes alike (Atlassian: GET and POST
    # 100 per second, PUT and DELETE 50; the lower one holds for every method here).
    "jira.burst": Limit(50, 1),
    # Per-issue write limit (20 writes per 2 s and 100 per 30 s: the stricter long window).
    "jira.issue_write": Limit(100, 30),
    "trello.key": Limit(300, 10),
    "trello.token": Limit(100, 10),
    "trello.members": Limit(100, 900),
}


@dataclass(frozen=True, slots=True)
class Bucket:
    """A bucket's state at `at` (epoch seconds); None in a store means full and unused."""

    tokens: float
    at: float
    blocked_until: float = 0.0
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """One request as the limiter sees it. `endpoint` is the class label (`search`,
    `webhook`, `board_cards` ...); `objects` the objects a read is expected to return (Jira
    charges a point each); `issue` the issue a write changes."""

    source: SourceName
    endpoint: str
    method: str = "GET"
    priority: Priority = Priority.FULL
    objects: int = 0
    issue: str | None = None

    @property
    def write(self) -> bool:
        return self.method.upper() not in ("GET", "HEAD")


@dataclass(frozen=True, slots=True)
class Need:
    key: str  # the bucket, relative to the credential: `quota`, `burst:GET search`, ...
    kind: str  # its limit's name without the source: quota, burst, issue_write, key, ...
    limit: Limit
    cost: float


@dataclass(frozen=True, slots=True)
class Decision:
    """`wait` 0: go, and store `buckets`; else sleep `wait` seconds (for `reason`) and ask
    again (nothing was taken)."""

    wait: float
    buckets: dict[str, Bucket]
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Throttle:
    """What a 429 blocks: the buckets of `kinds` among a call's needs, until `until`."""

    kinds: tuple[str, ...]
    reason: str
    until: float


def points(call: Call, returned: int | None = None) -> float:
    """Jira's points for a call: 1, plus one per object a read returns (`returned`, else
    the estimate `call.objects`); writes pay the base point only."""
    if call.write:
        return 1.0
    return 1.0 + max(0, call.objects if returned is None else returned)


def needs(call: Call, limits: Mapping[str, Limit]) -> list[Need]:
    """The buckets a call takes from, and how much (see the module docstring). A limit
    missing from `limits` does not apply."""
    if call.source == "jira":
        wanted = [("quota", "quota", points(call)),
                  (f"burst:{call.method.upper()} {call.endpoint}", "burst", 1.0)]
        if call.write and call.issue:
            wanted.append((f"issue:{call.issue}", "issue_write", 1.0))
    else:
        wanted = [("key", "key", 1.0), ("token", "token", 1.0)]
        if call.endpoint == "members":
            wanted.append(("members", "members", 1.0))
    # A limit left out of `limits` does not apply (Data Center has no points quota).
    return [Need(key, kind, limits[f"{call.source}.{kind}"], cost)
            for key, kind, cost in wanted if f"{call.source}.{kind}" in limits]


def refilled(bucket: Bucket | None, limit: Limit, now: float,
             fraction: float = BURST_FRACTION) -> Bucket:
    """The bucket at `now`: full when new; refilled by the time passed, up to its capacity."""
    capacity = limit.capacity(fraction)
    if bucket is None:
        return Bucket(capacity, now)
    elapsed = max(0.0, now - bucket.at)
    tokens = min(capacity, bucket.tokens + elapsed * limit.rate(fraction))
    return replace(bucket, tokens=tokens, at=max(now, bucket.at))


def decide(current: Mapping[str, Bucket | None], wanted: Sequence[Need], priority: Priority,
           now: float, fraction: float = BURST_FRACTION) -> Decision:
    """May a call go now? All its buckets must be unblocked and hold its cost above the
    priority's reserve; then every one pays. A cost larger than what a bucket may hold
    passes once the bucket is at that most and leaves it in debt (the next calls wait)."""
    updated: dict[str, Bucket] = {}
    wait, reason = 0.0, None
    for need in wanted:
        bucket = refilled(current.get(need.key), need.limit, now, fraction)
        updated[need.key] = bucket
        capacity = need.limit.capacity(fraction)
        floor = RESERVE[priority] * capacity
        if bucket.blocked_until > now + TIME_EPSILON:
            late = bucket.blocked_until - now
            if late > wait:
                wait, reason = late, bucket.reason or "throttled"
            continue
        required = floor + min(need.cost, capacity - floor)
        rate = need.limit.rate(fraction)
        if bucket.tokens + rate * TIME_EPSILON < required:
            # > TIME_EPSILON by the test above: after it the bucket is ready, rounding and all.
            late = (required - bucket.tokens) / rate
            if late > wait:
                wait, reason = late, f"client_{need.kind}"
    if wait > 0:
        return Decision(wait, updated, reason)
    paid = {need.key: replace(updated[need.key], tokens=updated[need.key].tokens - need.cost)
            for need in wanted}
    return Decision(0.0, {**updated, **paid})


def settle(bucket: Bucket | None, limit: Limit, extra: float, now: float,
           fraction: float = BURST_FRACTION) -> Bucket:
    """Charge `extra` more (or give back, when negative) after the answer, e.g. the points
    of objects a read returned beyond or below its estimate."""
    current = refilled(bucket, limit, now, fraction)
    tokens = min(limit.capacity(fraction), current.tokens - extra)
    return replace(current, tokens=tokens)


def blocked(bucket: Bucket | None, limit: Limit, throttle: Throttle, now: float,
            fraction: float = BURST_FRACTION) -> Bucket:
    """The bucket after a 429 of its class: blocked until the source's time, and drained to
    the full syncs' reserve, so that afterwards write-backs and incremental syncs go at once
    while a full sync resumes at the refill rate rather than bursting into the source again.
    (Drained to nothing, a quota bucket would hold every call for minutes after a one-second
    block: 1,726 points at 16.25 a second for the next full-sync page.)"""
    current = refilled(bucket, limit, now, fraction)
    if throttle.until > current.blocked_until:
        current = replace(current, blocked_until=throttle.until, reason=throttle.reason)
    level = RESERVE[Priority.FULL] * limit.capacity(fraction)
    return replace(current, tokens=min(current.tokens, level), at=max(current.at, throttle.until))


def jira_throttle(headers: Mapping[str, str], call: Call, now: float,
                  limits: Mapping[str, Limit]) -> Throttle:
    """A Jira 429 → what it blocks and until when. `headers` with lower-case names."""
    reason = (headers.get("ratelimit-reason") or headers.get("x-ratelimit-reason") or "").strip()
    wait = retry_after(headers, now)
    if reason == "jira-burst-based":
        kinds: tuple[str, ...] = ("burst",)
        default = _window(limits, "jira.burst", 1.0)
    elif reason == "jira-per-issue-on-write" and call.write and call.issue:
        kinds, default = ("issue_write",), _window(limits, "jira.issue_write", 30.0)
    elif reason == "jira-per-issue-on-write":
        kinds, default = ("burst",), _window(limits, "jira.issue_write", 30.0)
    else:
        # The quota (tenant- or global-based), and a reason boxsync does not know: every
        # call of the credential waits, the safe reading (Data Center, which has no quota
        # bucket: its endpoint's, at least).
        kinds, default = ("quota", "burst"), _window(limits, "jira.quota", 3600.0)
    return Throttle(kinds, reason or "jira-unspecified",
                    now + (wait if wait is not None else default) + MARGIN_SECONDS)


def trello_throttle(headers: Mapping[str, str], body: bytes, call: Call, now: float,
                    limits: Mapping[str, Limit]) -> Throttle:
    """A Trello 429 → what it blocks: by the error body, else the token (see the module
    docstring); for the limit's whole window, as Trello says nothing of when it resets."""
    text = body.decode("utf-8", "replace")
    if "API_KEY_LIMIT_EXCEEDED" in text:
        kind, reason = "key", "API_KEY_LIMIT_EXCEEDED"
    elif "API_TOKEN_LIMIT_EXCEEDED" in text:
        kind, reason = "token", "API_TOKEN_LIMIT_EXCEEDED"
    elif call.endpoint == "members":
        kind, reason = "members", "trello-members"
    else:
        kind, reason = "token", "trello-unspecified"
    wait = retry_after(headers, now)
    window = _window(limits, f"trello.{kind}", 10.0)
    return Throttle((kind,), reason, now + max(wait or 0.0, window) + MARGIN_SECONDS)


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds from `now` the source asked for: `Retry-After` (seconds or an HTTP date),
    else Jira's `X-RateLimit-Reset` (ISO 8601, `2026-06-05T06:00Z`); None when neither."""
    value = (headers.get("retry-after") or "").strip()
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError, IndexError):
            pass
    reset = (headers.get("x-ratelimit-reset") or "").strip()
    if reset:
        try:
            return max(0.0, datetime.fromisoformat(reset.replace("Z", "+00:00")).timestamp()
                       - now)
        except ValueError:
            return None
    return None


def parse_limits(text: str) -> dict[str, Limit]:
    """`jira.quota=65000/3600,trello.key=300/10` → the defaults with those replaced;
    ValueError naming an unknown limit or a bad value."""
    chosen = dict(DEFAULT_LIMITS)
    for pair in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or name not in DEFAULT_LIMITS:
            raise ValueError(f"expected NAME=COUNT/SECONDS with NAME one of "
                             f"{', '.join(DEFAULT_LIMITS)}, got {pair!r}")
        chosen[name] = Limit.parse(value)
    return chosen


def _window(limits: Mapping[str, Limit], name: str, default: float) -> float:
    limit = limits.get(name)
    return limit.window if limit is not None else default
