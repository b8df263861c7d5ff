"""`python -m bench.limits`: a full sync of 100,000 tasks from a local Jira that enforces a
points quota and a burst limit, through boxsync's own client-side limiter (issue 18).

The server is bench.full_sync's (the same 100,000 issues, served from another process), made
to enforce Jira Cloud's two limits the way Atlassian documents them: a points quota (1 point
per request plus 1 per issue returned, so a page of 100 costs 101) over fixed windows that
reset on the window's boundary (Jira's hourly quota resets at the top of the hour), and a
burst limit per endpoint and method over a sliding second (stricter than any fixed window).
A request past either is answered 429 with `RateLimit-Reason: jira-quota-tenant-based` or
`jira-burst-based`, `Retry-After` (whole seconds) and `X-RateLimit-Reset`, and costs nothing.

The client is the real one: `build_sources` with `source_limits` set to exactly the server's
numbers, over the PostgreSQL limit store the sync runner uses, then bench.full_sync's Runner
(queue, claim, `processors.sync.execute.full_sync`, task.updates, sync.status). The limits are
scaled down from Atlassian's (65,000 points an hour, 100 requests a second) so that the run
takes about a minute: 101,000 points per 60 s (1,000 pages a minute) and 25 requests a second.

Printed: the requests the server answered, its 429s by reason (target: none beyond the first
of each kind), elapsed time, the achieved requests/s against the allowed ones (the lower of
the burst limit and the quota over the points a request cost) and their ratio (target
≥ 0.85). The limiter keeps 10 % of each limit in hand by design (a bucket of 10 % of the
limit refilled at 90 % of it, so that no window of either kind ever sees more than the
limit): past the first bucketful, a long run tends to 0.9.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import SecretStr

from bench.full_sync import (
    FIELD_MAP,
    OWNER,
    ROOT,
    Pass,
    Runner,
    Server,
    SteadySources,
    define,
    serve,
)
from bench.results import Row, record, verdict
from bench.scratch import scratch_database
from processors.settings import load_settings
from processors.sources.limiter import objects_in
from processors.sources.limits import Limit
from processors.store import db
from processors.store.source_limits import PgLimitStore
from schemas.reference import Box
from tests.support.fake_sources import FakeSources, RecordedRequest, Scripted
from tests.support.kafka import create_topics, delete_topics

ISSUES = 100_000
PROJECT = "LIM"
QUOTA = "101000/60"  # points per window: 1,000 pages of 100 issues a minute
BURST = "25/1"  # requests per second, per endpoint and method
TARGET_RATIO = 0.85
LIMITED = {("GET", "/rest/api/3/search/jql"), ("POST", "/rest/api/3/search/approximate-count")}
QUOTA_REASON, BURST_REASON = "jira-quota-tenant-based", "jira-burst-based"


# -- the server: bench.full_sync's, enforcing the limits ---------------------------------------

@dataclass
class EnforcingSources(SteadySources):
    """Answers the Jira search and count like SteadySources while within the limits, 429
    otherwise (see the module docstring); `stats` says what it did."""

    quota = Limit.parse(QUOTA)  # set by the server process from its arguments
    burst = Limit.parse(BURST)

    def __post_init__(self) -> None:
        self._limit_lock = threading.Lock()
        self._window = 0.0  # start of the current quota window (epoch seconds)
        self._spent = 0.0  # points in it
        self._recent: dict[str, deque[float]] = {}  # answered requests in the last second
        self._kept: dict[int, tuple[int, Any]] = {}  # answers computed in `record`
        self.counts: Counter[str] = Counter()
        self.points = 0.0

    def record(self, method: str, target: str, headers: dict[str, str], body: Any
               ) -> tuple[RecordedRequest, Scripted | None]:
        request, scripted = super().record(method, target, headers, body)
        if scripted is not None or (method, request.path) not in LIMITED:
            return request, scripted
        # The points depend on the answer (an issue returned costs one), so answer now.
        status, value = super().answer(request)
        refusal = self._charge(request, 1 + objects_in(value)) if status == 200 else None
        if refusal is None:
            self._kept[request.number] = (status, value)
        return request, refusal

    def answer(self, request: RecordedRequest) -> tuple[int, Any]:
        kept = self._kept.pop(request.number, None)
        return kept if kept is not None else super().answer(request)

    def _charge(self, request: RecordedRequest, cost: float) -> Scripted | None:
        with self._limit_lock:
            now = time.time()
            window = now - now % self.quota.window
            if window != self._window:
                self._window, self._spent = window, 0.0
            recent = self._recent.setdefault(f"{request.method} {request.path}", deque())
            while recent and recent[0] <= now - self.burst.window:
                recent.popleft()
            if self._spent + cost > self.quota.count:
                reason, until = QUOTA_REASON, window + self.quota.window
            elif len(recent) >= self.burst.count:
                reason, until = BURST_REASON, recent[0] + self.burst.window
            else:
                self._spent += cost
                self.points += cost
                recent.append(now)
                self.counts["answered"] += 1
                return None
            self.counts[reason] += 1
        reset = datetime.fromtimestamp(until, UTC).isoformat(timespec="milliseconds")
        return Scripted(429, {"RateLimit-Reason": reason,
                              "Retry-After": str(max(1, math.ceil(until - now))),
                              "X-RateLimit-Reset": reset.replace("+00:00", "Z")},
                        b'{"errorMessages":["Rate limit exceeded."]}')


# -- the run ------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--issues", type=int, default=ISSUES)
    parser.add_argument("--project", default=PROJECT)
    parser.add_argument("--quota", default=QUOTA, type=Limit.parse, help="points/seconds")
    parser.add_argument("--burst", default=BURST, type=Limit.parse, help="requests/seconds")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--site", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        EnforcingSources.quota, EnforcingSources.burst = args.quota, args.burst
        fake = serve(args.issues, args.project, args.site, EnforcingSources)
        assert isinstance(fake, EnforcingSources)
        print(orjson.dumps({**fake.counts, "points": fake.points}).decode(), flush=True)
        return
    run = f"benchlim{uuid.uuid4().hex[:6]}"
    print(f"limits: full sync of {args.issues:,} issues from a local Jira that enforces a "
          f"quota of {args.quota.count:,g} points per {args.quota.window:g} s and a burst of "
          f"{args.burst.count:g} requests per {args.burst.window:g} s, with boxsync's limiter "
          "set to the same")
    server = Server.start(args.issues, args.project, f"{run}.atlassian.net",
                          module="bench.limits",
                          extra=("--quota", str(args.quota), "--burst", str(args.burst)))
    try:
        one, waited = measure(server, run, args)
    finally:
        server.stop()
    assert server.process.stdout is not None
    stats = orjson.loads(server.process.stdout.read() or b"{}")
    record("limits", report(one, waited, stats, args))


def measure(server: Server, run: str, args: argparse.Namespace
            ) -> tuple[Pass, dict[str, float]]:
    """One full sync of one box over the project; the pass and the client's waits by reason."""
    base = load_settings()
    if not base.local_dir.is_absolute():
        base = base.model_copy(update={"local_dir": ROOT / base.local_dir})
    credentials = FakeSources()  # the server's default credentials
    settings = base.model_copy(update={
        "topic_prefix": f"{run}.", "jira_base_url": server.url,
        "jira_email": credentials.jira_email,
        "jira_api_token": SecretStr(credentials.jira_api_token),
        "jira_field_map": base.jira_field_map or FIELD_MAP,
        "source_limits": f"jira.quota={args.quota},jira.burst={args.burst}"})
    create_topics(settings)
    box = Box.model_validate({
        "box_id": f"{run}-box", "name": "Limits program", "box_type": "program",
        "scope_type": "own", "status": "in_progress", "scope": {"jira_projects": [args.project]},
        "scope_owner": OWNER, "admins": [OWNER["id"]]})
    try:
        with scratch_database(settings, "limits") as scratch, \
                db.connect(scratch.tenant_url, autocommit=True) as conn:
            define(conn, box, args.project)
            store = PgLimitStore(scratch.tenant_url)  # as SyncRunner builds its sources
            try:
                runner = Runner(settings, conn, {}, store=store)
                one = runner.full_sync(box, f"{run}-run", "under limits", False)
            finally:
                store.close()
        waited = {sample.labels["reason"]: sample.value
                  for family in runner.metrics.registry.collect()
                  if family.name == "boxsync_source_throttled_seconds"
                  for sample in family.samples if sample.name.endswith("_total")}
        return one, waited
    finally:
        delete_topics(settings.kafka_bootstrap, settings.topic_prefix)


def report(one: Pass, waited: dict[str, float], stats: dict[str, float],
           args: argparse.Namespace) -> list[Row]:
    answered = int(stats.get("answered", 0))
    refused = {reason: int(stats.get(reason, 0)) for reason in (QUOTA_REASON, BURST_REASON)}
    beyond = sum(max(0, count - 1) for count in refused.values())
    per_request = stats.get("points", 0.0) / answered if answered else 0.0
    allowed = min(args.burst.count / args.burst.window,
                  args.quota.count / args.quota.window / per_request if per_request else 0.0)
    achieved = answered / one.seconds
    ratio = achieved / allowed if allowed else 0.0
    complete = one.processed == one.emitted == args.issues
    print(f"  {one.processed:,} issues listed, {one.emitted:,} updates emitted in "
          f"{one.seconds:.1f} s; CPU seconds of this process {one.cpu['sync process']:.1f}")
    print(f"  requests: {answered + sum(refused.values()):,} ({answered:,} answered, "
          f"{stats.get('points', 0):,.0f} points, {per_request:.1f} a request); 429s: "
          + ", ".join(f"{reason} {count}" for reason, count in refused.items()))
    print("  the limiter waited: " + (", ".join(f"{reason} {seconds:.1f} s" for reason, seconds
                                                in sorted(waited.items())) or "never"))
    quiet = beyond == 0
    print(f"limits: 429s beyond the first of each kind: {beyond} (target 0): {verdict(quiet)}")
    met = ratio >= TARGET_RATIO and complete
    print(f"limits: {achieved:.2f} requests/s achieved, {allowed:.2f} allowed (min of burst "
          f"{args.burst.count / args.burst.window:g}/s and quota {args.quota} / "
          f"{per_request:.1f} points) = {ratio:.3f} (target ≥ {TARGET_RATIO}): {verdict(met)}"
          f"{'' if complete else ' (INCOMPLETE: not every issue became one update)'}")
    label = f"{args.issues:,} tasks under quota {args.quota} + burst {args.burst}"
    return [Row(f"limits: {label}, achieved/allowed req/s",
                f"{ratio:.2f} ({achieved:.1f}/{allowed:.1f})", f"≥ {TARGET_RATIO}",
                verdict(met)),
            Row("limits: 429s beyond the first of each kind",
                f"{beyond} (quota {refused[QUOTA_REASON]}, burst {refused[BURST_REASON]})", "0",
                verdict(quiet))]


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
