"""`python -m bench.full_sync`: a full sync of a 100,000-task box from a local Jira (issue 5).

What is measured: one full sync of one box whose scope is one Jira project of 100,000 issues
(the documented default box limit), read from a local HTTP server that answers like Jira Cloud
(tests.support.fake_sources: `GET /rest/api/3/search/jql` paged by `nextPageToken`, basic
auth, v3 bodies with rich text as ADF), through the real code path: `JiraSource` built by
`build_sources` from the settings (pages of 100, as configured by default), then
`processors.sync.execute.full_sync` with a `RunContext` on a real PostgreSQL connection (the
`tasks` cache writes, page by page) and a real confluent-kafka producer to `task.updates`.
The emit and progress callbacks do what `SyncRunner._emit` and `SyncRunner._progress` do
(an orjson-encoded update keyed by task id; progress in `sync_runs` and a `sync.status`
message at most every 1.5 s); the run is queued, claimed and finished as the runner does.

Two passes by default: the box's first full sync (every task new to the cache: inserts), then
a second full sync of the same box (every task cached: the field-by-field merge, the previous
members read first, the catch-up query over 100,000 update ids), which is what a
`resync_box` does. Printed for each: tasks/s (issues listed / wall time from the run's first
status to the producer's final flush); and the peak RSS of the process that ran both
(`ru_maxrss`), against the targets: at least 2,000 tasks/s and under 300 MB. This process
imports what a worker's sync stage process imports (processors.runtime.stage_loop and
processors.sync.runner, the Kafka loop and the sync runner) before the baseline is taken, so
its RSS compares with the real `bs-sync` process. Also the CPU
seconds of each party over each pass: this process, the HTTP server, the PostgreSQL backend
and the broker.

Why the server runs in a process of its own: its 100,000 issues (about 130 MB of Python
objects) and its CPU must not count as the sync's. It caches the selection of each JQL
(the issues do not change during the run), so each page costs it a slice and a JSON encoding
instead of a filter and sort of 100,000 issues.

Isolation: a box id and Jira site of its own, a scratch database (bench.scratch) and topics
under a fresh prefix, all removed at the end, as is the server. `--profile` runs the sync
under cProfile and prints where the time goes (the rate is then lower).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import resource
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psutil
import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from pydantic import SecretStr

# What a worker's sync stage process imports (see above).
import processors.runtime.stage_loop
import processors.sync.runner  # noqa: F401
from bench.pipeline import broker_process
from bench.results import Row, record, verdict
from bench.scratch import scratch_database
from processors.boxes.logic import status_key, sync_status
from processors.metrics import Metrics
from processors.runtime.kafka import produce, producer_config, topic
from processors.settings import Settings, load_settings
from processors.sources.jira import build_jql, filter_jql
from processors.sources.limiter import LimitStore
from processors.store import boxes, db, runs
from processors.sync.execute import RunContext, full_sync
from processors.sync.sources import build_sources
from schemas.reference import Box
from schemas.topics import SYNC_STATUS, TASK_UPDATES
from tests.support.fake_sources import FakeSources
from tests.support.kafka import create_topics, delete_topics

ROOT = Path(__file__).resolve().parents[1]
ISSUES = 100_000
PROJECT = "BIG"
TARGET_RATE = 2000.0  # tasks/s
TARGET_RSS_MB = 300.0  # megabytes (10^6 bytes)
FIELD_MAP = {"customfield_10015": "start_date", "customfield_10016": "story_points"}
OWNER = {"kind": "scope_owner", "id": "557058:bench-owner", "name": "Bench Owner",
         "source": "jira"}


# -- the source: compact Jira Cloud issues, served from another process ----------------------

def make_issues(count: int, project: str, site: str, seed: int = 5) -> list[dict[str, Any]]:
    """`count` issues of one project as Jira Cloud's v3 search returns them, about 2.5 KB of
    JSON each: status, assignee, priority, project and epic objects with their `self` and
    avatar URLs, ADF descriptions, labels, links, due dates, the two mapped custom fields.
    Objects that real issues share (statuses, people, epics...) are shared here too, so the
    list stays small in memory."""
    rng = random.Random(seed)
    base = f"https://{site}/rest/api/3"
    statuses = [_status(base, *s) for s in (("1", "To Do", 2, "new", "blue-gray"),
                                            ("3", "In Progress", 4, "indeterminate", "yellow"),
                                            ("10001", "In Review", 4, "indeterminate", "yellow"),
                                            ("10002", "Done", 3, "done", "green"))]
    people = [_person(base, n) for n in range(60)]
    priorities = [{"self": f"{base}/priority/{n}", "iconUrl": f"https://{site}/images/icons/"
                   f"priorities/{name.lower()}.svg", "name": name, "id": str(n)}
                  for n, name in enumerate(("Highest", "High", "Medium", "Low", "Lowest"), 1)]
    owner = {"self": f"{base}/project/10000", "id": "10000", "key": project,
             "name": f"{project} platform", "projectTypeKey": "software", "simplified": False,
             "avatarUrls": _avatars(f"https://{site}/rest/api/3/universal_avatar/view/type/"
                                    "project/avatar/10400")}
    epics = [{"id": str(900000 + n), "key": f"{project}-E{n}", "self": f"{base}/issue/{900000 + n}",
              "fields": {"summary": f"Epic {n}: {rng.choice(_WORDS)} {rng.choice(_WORDS)}",
                         "status": rng.choice(statuses), "priority": rng.choice(priorities),
                         "issuetype": {"self": f"{base}/issuetype/10000", "id": "10000",
                                       "name": "Epic", "subtask": False,
                                       "hierarchyLevel": 1}}} for n in range(300)]
    descriptions = [_adf([" ".join(rng.choice(_WORDS) for _ in range(rng.randrange(8, 30)))
                          for _ in range(rng.randrange(1, 4))]) for _ in range(200)]
    label_sets = [sorted(rng.sample(_LABELS, k)) for k in (0, 1, 1, 2, 3) for _ in range(20)]
    issues = []
    for n in range(1, count + 1):
        issue_id = 10000 + n
        fields: dict[str, Any] = {
            "summary": f"{rng.choice(_WORDS).capitalize()} the {rng.choice(_WORDS)} "
                       f"{rng.choice(_WORDS)} ({n})",
            "status": rng.choice(statuses),
            "assignee": rng.choice(people) if rng.random() < 0.8 else None,
            "priority": rng.choice(priorities),
            "duedate": f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
                       if rng.random() < 0.4 else None,
            "labels": rng.choice(label_sets),
            "issuelinks": [],
            "description": rng.choice(descriptions) if rng.random() < 0.7 else None,
            "project": owner,
            "updated": f"2026-{rng.randrange(1, 12):02d}-{rng.randrange(1, 29):02d}T"
                       f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:"
                       f"{rng.randrange(60):02d}.{rng.randrange(1000):03d}+0000",
            "customfield_10015": f"2026-{rng.randrange(1, 13):02d}-01"
                                 if rng.random() < 0.3 else None,
            "customfield_10016": float(rng.choice((1, 2, 3, 5, 8))) if rng.random() < 0.5
                                 else None,
        }
        if rng.random() < 0.6:
            fields["parent"] = rng.choice(epics)
        if rng.random() < 0.15:
            other = rng.randrange(1, count + 1)
            fields["issuelinks"] = [_link(base, project, n, other, rng.choice(statuses))]
        issues.append({"expand": "renderedFields,names,schema,operations,editmeta,changelog",
                       "id": str(issue_id), "self": f"{base}/issue/{issue_id}",
                       "key": f"{project}-{n}", "fields": fields})
    return issues


_WORDS = ("rotate", "billing", "export", "cache", "gateway", "token", "report", "migrate",
          "search", "index", "invoice", "alert", "retry", "queue", "session", "audit",
          "upload", "schema", "tenant", "latency", "dashboard", "webhook", "ledger", "sync")
_LABELS = ["backend", "frontend", "infra", "security", "ux", "data", "mobile", "api"]


def _avatars(url: str) -> dict[str, str]:
    return {size: f"{url}?size={name}" for size, name in (
        ("48x48", "large"), ("24x24", "small"), ("16x16", "xsmall"), ("32x32", "medium"))}


def _status(base: str, status_id: str, name: str, category_id: int, key: str,
            color: str) -> dict[str, Any]:
    return {"self": f"{base}/status/{status_id}", "description": "", "iconUrl":
            f"{base.rsplit('/rest', 1)[0]}/", "name": name, "id": status_id,
            "statusCategory": {"self": f"{base}/statuscategory/{category_id}", "id": category_id,
                               "key": key, "colorName": color, "name": name}}


def _person(base: str, n: int) -> dict[str, Any]:
    account = f"712020:{n:08x}-1111-2222-3333-{n:012x}"
    return {"self": f"{base}/user?accountId={account}", "accountId": account,
            "emailAddress": f"person{n}@example.com",
            "avatarUrls": _avatars(f"https://secure.gravatar.com/avatar/{n:032x}"),
            "displayName": f"Person {n}", "active": True, "timeZone": "Europe/Berlin",
            "accountType": "atlassian"}


def _adf(paragraphs: list[str]) -> dict[str, Any]:
    return {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": text}]}
        for text in paragraphs]}


def _link(base: str, project: str, n: int, other: int, status: dict[str, Any]
          ) -> dict[str, Any]:
    return {"id": str(500000 + n), "self": f"{base}/issueLink/{500000 + n}",
            "type": {"id": "10000", "name": "Blocks", "inward": "is blocked by",
                     "outward": "blocks", "self": f"{base}/issueLinkType/10000"},
            "outwardIssue": {"id": str(10000 + other), "key": f"{project}-{other}",
                             "self": f"{base}/issue/{10000 + other}",
                             "fields": {"summary": f"Linked issue {other}", "status": status}}}


class SteadySources(FakeSources):
    """FakeSources whose issues do not change while it serves: each JQL's selection is
    computed once (the parent filters and sorts every issue on every request)."""

    def _select(self, jql: str) -> list[dict[str, Any]]:
        cache: dict[str, list[dict[str, Any]]] = self.__dict__.setdefault("_cache", {})
        if jql not in cache:
            cache[jql] = super()._select(jql)
        return cache[jql]


def serve(count: int, project: str, site: str,
          server: type[SteadySources] = SteadySources) -> SteadySources:
    """The server process: print the URL, serve until stdin closes; the server, stopped."""
    if not hasattr(FakeSources, "_select"):
        raise SystemExit("tests.support.fake_sources changed: FakeSources._select is gone")
    fake = server(issues=make_issues(count, project, site))
    with fake:
        for jql in (build_jql([project], [], None), filter_jql([project], [], None)):
            fake._select(jql)  # the search and the count of the box's scope, computed now
        print(fake.url, flush=True)
        sys.stdin.read()  # until the bench closes our stdin (or dies)
    return fake


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str

    @classmethod
    def start(cls, count: int, project: str, site: str, *, module: str = "bench.full_sync",
              extra: tuple[str, ...] = ()) -> Server:
        """`python -m <module> --serve ...` (with `extra` arguments), once it prints its URL."""
        process = subprocess.Popen(
            [sys.executable, "-m", module, "--serve", "--issues", str(count),
             "--project", project, "--site", site, *extra], cwd=ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http://"):
            process.kill()
            raise SystemExit(f"the source server did not start (exit {process.wait()})")
        return cls(process, url)

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


# -- the sync, measured -----------------------------------------------------------------------

@dataclass
class Pass:
    """One full sync: how long it took, what it did, and what each party spent on it."""

    label: str
    seconds: float
    processed: int
    emitted: int
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.processed / self.seconds


@dataclass
class Measured:
    passes: list[Pass]
    on_topic: int  # records on task.updates after every pass
    cached: int  # tasks the cache holds with the box
    baseline_mib: float  # this process before the first pass
    peak_mib: float  # this process's peak, over every pass

    @property
    def peak_mb(self) -> float:
        return self.peak_mib * 2**20 / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--issues", type=int, default=ISSUES)
    parser.add_argument("--project", default=PROJECT)
    parser.add_argument("--passes", type=int, default=2, choices=(1, 2),
                        help="2: also a second full sync of the same box, over a warm cache")
    parser.add_argument("--profile", action="store_true",
                        help="run the sync under cProfile and print where the time goes")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--site", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.issues, args.project, args.site)
        return
    run = f"benchfs{uuid.uuid4().hex[:6]}"
    print(f"full sync: one box over Jira project {args.project}, {args.issues:,} issues served "
          f"like Jira Cloud from a separate process on 127.0.0.1; {os.cpu_count()} cores")
    started = time.perf_counter()
    server = Server.start(args.issues, args.project, f"{run}.atlassian.net")
    print(f"  source server up in {time.perf_counter() - started:.1f} s at {server.url}")
    try:
        measured = measure(server, run, args)
    finally:
        server.stop()
    rows = report(measured, args.issues)
    if not args.profile:
        record("full_sync", rows)


def report(measured: Measured, issues: int) -> list[Row]:
    """Print each pass and the verdicts; the rows for the summary table. The rate verdict is
    the slower pass's, and a pass that did not turn every issue into one update fails."""
    rows = []
    for one in measured.passes:
        print(f"  {one.label}: {one.processed:,} issues listed, {one.emitted:,} updates emitted;"
              " CPU seconds: " + ", ".join(f"{name} {sec:.1f}" for name, sec in one.cpu.items()))
        complete = one.processed == one.emitted == issues
        met = one.rate >= TARGET_RATE and complete
        print(f"full sync ({one.label}): {one.processed:,} tasks in {one.seconds:.1f} s = "
              f"{one.rate:,.0f} tasks/s (target ≥ {TARGET_RATE:,.0f}): {verdict(met)}"
              f"{'' if complete else ' (INCOMPLETE: not every issue became one update)'}")
        rows.append(Row(f"full sync {issues:,} tasks, {one.label}", f"{one.rate:,.0f} tasks/s",
                        f"≥ {TARGET_RATE:,.0f}", verdict(met)))
    expected = issues * len(measured.passes)
    print(f"  task.updates holds {measured.on_topic:,} records ({expected:,} expected); the "
          f"cache holds {measured.cached:,} tasks with the box")
    small = measured.peak_mb < TARGET_RSS_MB
    print(f"full sync: peak RSS of the sync process {measured.peak_mib:.0f} MiB = "
          f"{measured.peak_mb:.0f} MB (before the first run: {measured.baseline_mib:.0f} MiB; "
          f"target < {TARGET_RSS_MB:.0f} MB): {verdict(small)}")
    rows.append(Row("full sync, peak RSS of the sync process", f"{measured.peak_mb:.0f} MB",
                    f"< {TARGET_RSS_MB:.0f} MB", verdict(small)))
    return rows


def measure(server: Server, run: str, args: argparse.Namespace) -> Measured:
    """Set up topics, a scratch database and the box, then run the passes."""
    base = load_settings()
    if not base.local_dir.is_absolute():
        base = base.model_copy(update={"local_dir": ROOT / base.local_dir})
    credentials = FakeSources()  # the server's default credentials
    settings = base.model_copy(update={
        "topic_prefix": f"{run}.", "jira_base_url": server.url,
        "jira_email": credentials.jira_email,
        "jira_api_token": SecretStr(credentials.jira_api_token),
        # Jira Cloud's usual ids of "Start date" and "Story point estimate", as `make` sets.
        "jira_field_map": base.jira_field_map or FIELD_MAP})
    create_topics(settings)
    box = Box.model_validate({
        "box_id": f"{run}-box", "name": "Platform program", "box_type": "program",
        "scope_type": "own", "status": "in_progress", "scope": {"jira_projects": [args.project]},
        "scope_owner": OWNER, "admins": [OWNER["id"]]})
    try:
        with scratch_database(settings, "fullsync") as scratch, \
                db.connect(scratch.tenant_url, autocommit=True) as conn:
            define(conn, box, args.project)
            runner = Runner(settings, conn, {"HTTP server": psutil.Process(server.process.pid),
                                             "broker": broker_process()})
            baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            labels = ("first sync", "second sync, cache warm")[:args.passes]
            passes = [runner.full_sync(box, f"{run}-run{n}", label, args.profile)
                      for n, label in enumerate(labels)]
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            cached = _scalar(conn, "SELECT count(*) FROM tasks WHERE box_ids @> ARRAY[%s]"
                             "::text[]", box.box_id)
        return Measured(passes, records_on(settings.kafka_bootstrap,
                                           topic(settings, TASK_UPDATES)), cached, baseline, peak)
    finally:
        delete_topics(settings.kafka_bootstrap, settings.topic_prefix)


def define(conn: psycopg.Connection, box: Box, project: str) -> None:
    """The box and its scope owner's grant, as the boxes stage stores them from the topics."""
    boxes.upsert_reference(conn, "box.definitions", box.box_id, box.model_dump(mode="json"), "",
                           0, 0)
    boxes.ensure_box_state(conn, box.box_id)
    boxes.upsert_reference(conn, "jira.permissions", f"{OWNER['id']}|{project}", {
        "schema_version": 1, "user_id": OWNER["id"], "project": project,
        "permissions": ["BROWSE_PROJECTS"]}, "", 0, 0)


class Runner:
    """What `SyncRunner` does around `full_sync` for one claimed run: emit each update to
    task.updates (orjson, keyed by task id, counted), record progress in `sync_runs` and
    publish `sync.status` (running, then completed), flush, finish the run."""

    def __init__(self, settings: Settings, conn: psycopg.Connection,
                 parties: dict[str, psutil.Process | None], *,
                 store: LimitStore | None = None) -> None:
        self.conn = conn
        self.tenant = settings.topic_prefix  # as SyncRunner queues and claims
        self.metrics = Metrics.create()
        # The sources' limiter over `store` (SyncRunner passes a PgLimitStore), else its own.
        self.sources = build_sources(settings, store=store, metrics=self.metrics)
        self.producer = Producer(producer_config(settings))
        self.updates_topic = topic(settings, TASK_UPDATES)
        self.status_topic = topic(settings, SYNC_STATUS)
        backend = psutil.Process(_scalar(conn, "SELECT pg_backend_pid()"))
        self.parties = {**parties, "PostgreSQL backend": backend}

    def full_sync(self, box: Box, run_id: str, label: str, profile: bool) -> Pass:
        """Queue, claim and run one full sync of the box; measured from the first status
        to the producer's last flush."""
        runs.queue(self.conn, runs.Run(run_id, None, box.box_id, "full", OWNER, OWNER, False,
                                       []), self.tenant)
        run = runs.claim(self.conn, f"{run_id}:sync", self.tenant)
        assert run is not None and run.run_id == run_id, "another run was queued in the database"
        ctx = RunContext(self.conn, self.sources, self.emit,
                         lambda processed, total: self.progress(run, ctx))
        before = {name: _cpu(party) for name, party in self.parties.items()}
        process_cpu, started = time.process_time(), time.perf_counter()
        profiler = cProfile.Profile() if profile else None
        self.status(run, "running", read_only=True)
        if profiler is not None:
            profiler.enable()
        full_sync(ctx, run, box)
        self.producer.flush(120)
        if profiler is not None:
            profiler.disable()
        self.finish(run, ctx)
        seconds = time.perf_counter() - started
        cpu = {"sync process": time.process_time() - process_cpu}
        cpu |= {name: _cpu(party) - before[name] for name, party in self.parties.items()}
        if profiler is not None:
            print_profile(profiler, label)
        return Pass(label, seconds, ctx.processed, ctx.emitted, cpu)

    def emit(self, update: dict[str, Any]) -> None:  # SyncRunner._emit
        produce(self.producer, self.updates_topic, orjson.dumps(update), update["task_id"])
        self.metrics.task_updates_emitted.labels(update["sync_type"], update["op"]).inc()

    def progress(self, run: runs.Run, ctx: RunContext) -> bool:  # SyncRunner._progress
        stop = runs.progress(self.conn, run.run_id, ctx.processed, ctx.total, ctx.emitted,
                             ctx.left)
        self.status(run, "running", processed=ctx.processed, total=ctx.total, read_only=True)
        return stop

    def finish(self, run: runs.Run, ctx: RunContext) -> None:  # SyncRunner._finish
        runs.progress(self.conn, run.run_id, ctx.processed, ctx.total, ctx.emitted, ctx.left)
        runs.finish(self.conn, run.run_id, "completed", None)
        boxes.mark_full_synced(self.conn, run.box_id or "", datetime.now(UTC))
        self.status(run, "completed", processed=ctx.processed, total=ctx.total)
        self.producer.flush(30)

    def status(self, run: runs.Run, state: str, **fields: Any) -> None:  # SyncRunner._status
        at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        message = sync_status(run.box_id, state, at, run_id=run.run_id, sync_type="full",
                              requested_by=run.requested_by, **fields)
        produce(self.producer, self.status_topic, orjson.dumps(message), status_key(message))
        self.producer.poll(0)


def records_on(bootstrap: str, topic_name: str) -> int:
    """Records on a topic, from its partitions' watermarks."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}"})
    try:
        partitions = consumer.list_topics(topic_name, timeout=10).topics[topic_name].partitions
        ends = [consumer.get_watermark_offsets(TopicPartition(topic_name, p), timeout=10)
                for p in partitions]
        return sum(high - low for low, high in ends)
    finally:
        consumer.close()


def _scalar(conn: psycopg.Connection, query: str, *params: Any) -> int:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def _cpu(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return float(times.user + times.system)


def print_profile(profile: cProfile.Profile, label: str) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    path = ROOT / ".local" / f"bench-full-sync-{label.split(',')[0].replace(' ', '-')}.prof"
    stats.dump_stats(path)
    print(f"--- cProfile of the {label} (under the profiler, the rate is lower) ---")
    print(out.getvalue())
    print(f"  profile saved to {path} (python -m pstats {path})")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
