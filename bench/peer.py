"""`make bench`: boxsync's collapse against its Kafka Streams peer (issue 17 §1).

The peer is the project's own Kafka Streams application (bench/streams/, Kafka Streams at the
broker's version): the collapse written the way Kafka Streams is meant to be used, with a
TimestampExtractor on `occurred_at`, a tumbling window of the collapse interval and grace, an
aggregate keeping the latest change per field and the last author, and
`suppress(untilWindowCloses(unbounded()))`, one record per window on an output topic.

Workload: N ChangeEvents (200,000 by default, over 20,000 tasks, about 600 bytes each) as
ingest writes them: Jira `jira:issue_updated` bodies with one to three changed fields are
turned into ChangeEvents by boxsync's own ingest logic (`processors.ingest.logic.ingest`, in
this process), serialized as the ingest stage serializes them (orjson) and keyed by task id;
source times over 100 s, each task busy for about two windows, in source-time order as a live
ingest writes them. 64 sentinel changes 1,000 s ahead in source time follow at the end of every
partition: they close the workload's last windows at once in both systems, as later live
traffic would (without them Kafka Streams never closes a partition's last windows: its stream
time moves only with new records; boxsync closes them interval + grace of wall time later).

The same bytes go once to one input topic, which the bare loop and the Kafka Streams runs read
(each with its own consumer group, application id, output topic and state directory), and once
more, in one Kafka transaction, to the `sync.changes` of boxsync's run, whose worker is
started and ready first (as bench/pipeline.py does: its start-up is not timed). In one run:

- a bare confluent-kafka consume(batch) → orjson.loads → produce loop, before and after;
- Kafka Streams with exactly_once_v2 and at_least_once, each with 1 and 2 stream threads;
- boxsync's collapse stage alone: a worker with `BOXSYNC_WORKER_STAGES=collapse` (its two
  collapse processes), `BOXSYNC_FILTERS_ENABLED=false`, its PostgreSQL cache writes on, on a
  scratch database and a topic prefix of its own.

Clocks: Kafka Streams from its first record read to the later of its last record read and its
last window emitted (the app reports both); boxsync from the commit of the load to the
CreateTime of its last update (sentinel windows left out); the bare loop from its first record
to its last produce. CPU is user + system time from /proc of the measured processes (children
included) over that span, sampled every 0.1 s; peak RSS is the sum over the worker's processes
(the JVM for Kafka Streams). Then each output is checked against the windows computed here from
the workload, and Kafka Streams' against boxsync's `task.updates`.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import psutil
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr

from bench import filters
from bench.pipeline import broker_process, changes_accounted, forget
from bench.results import Row, record, verdict
from bench.scratch import scratch_database
from processors.ingest.logic import Accepted, IngestConfig, RawRecord, ingest
from processors.settings import Settings, load_settings
from schemas.topics import JIRA_EVENTS, SYNC_CHANGES, TASK_UPDATES
from tests.support.kafka import WorkerProcess, create_topics, delete_topics, free_port, worker_env

ROOT = Path(__file__).resolve().parents[1]
STREAMS = ROOT / "bench" / "streams"
JAR = STREAMS / "target" / "boxsync-peer.jar"
MAIN_CLASS = "dev.boxsync.peer.PeerCollapse"
TARGET_RATE_RATIO = 1.0  # issue 17: boxsync collapse alone / Kafka Streams EOS v2, events/s
SENTINEL_BASE_ID = 9_000_000
SENTINELS = 64
AUTHORS = 200
PROJECTS = tuple(f"P{n:02d}" for n in range(50))
LABELS = ("backend", "frontend", "infra", "security", "ux", "data", "mobile", "api")
STATUSES = (("To Do", "1", "new"), ("In Progress", "3", "indeterminate"),
            ("In Review", "10001", "indeterminate"), ("Done", "5", "done"))
PRIORITIES = (("Highest", "1"), ("High", "2"), ("Medium", "3"), ("Low", "4"))
# The changelog fields an event changes (one to three of them), as Jira names them.
CHANGEABLE = ("summary", "status", "assignee", "priority", "labels", "duedate",
              "customfield_10016")
FIELD_MAP = {"customfield_10016": "story_points"}


# --- the workload -------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """One (task, window) as the rules say it collapses: author, changed fields, count."""

    author: str | None
    fields: tuple[str, ...]
    count: int


@dataclass(frozen=True)
class Workload:
    records: list[tuple[bytes, bytes]]  # (task id, ChangeEvent JSON), sentinels last
    events: int  # without the sentinels
    mean_bytes: float
    tasks: int
    expected: dict[tuple[str, int], Expected]  # (task id, window start ms) →
    at_ms: dict[str, int]  # event id → its source time, to tell late changes


def make_workload(events: int, issues: int, spread_seconds: float, interval: int,
                  site: str, seed: int = 17) -> Workload:
    rng = random.Random(seed)
    start_ms = int((time.time() - 3600) // 10 * 10 * 1000)
    users = [{"accountId": f"557058:{i:08x}-aaaa-bbbb-cccc-{i:012x}",
              "displayName": f"User {i} of Platform Engineering", "active": True,
              "accountType": "atlassian"} for i in range(AUTHORS)]
    busy = {i: start_ms + int(rng.uniform(0, max(1.0, spread_seconds - 8)) * 1000)
            for i in range(issues)}
    raw = sorted((busy[issue] + rng.randrange(0, 8000), issue, n)
                 for n, issue in ((n, rng.randrange(issues)) for n in range(events)))
    config = IngestConfig(field_map=FIELD_MAP)
    topic = f"{site.split('.')[0]}.{JIRA_EVENTS.name}"
    records: list[tuple[bytes, bytes]] = []
    changes: list[dict[str, Any]] = []
    variants = _variants(rng)
    for offset, (timestamp, issue, n) in enumerate(raw):
        body = _body(variants[rng.randrange(len(variants))], timestamp, issue, n,
                     users[rng.randrange(AUTHORS)], site)
        change = _ingested(RawRecord(JIRA_EVENTS.name, offset % 4, offset, None, body,
                                     full_topic=topic), config)
        changes.append(change)
        records.append((change["task_id"].encode(), orjson.dumps(change)))
    last = raw[-1][0] if raw else start_ms
    for i in range(SENTINELS):
        body = _body(variants[0], last + 1_000_000, SENTINEL_BASE_ID + i, events + i, users[0],
                     site)
        change = _ingested(RawRecord(JIRA_EVENTS.name, 0, events + i, None, body,
                                     full_topic=topic), config)
        records.append((change["task_id"].encode(), orjson.dumps(change)))
    mean = sum(len(value) for _, value in records[:events]) / max(1, events)
    return Workload(records, events, mean, issues, expected_windows(changes, interval),
                    {c["event_id"]: _ms(c["occurred_at"]) for c in changes})


def _ingested(record: RawRecord, config: IngestConfig) -> dict[str, Any]:
    result = ingest(record, config)
    if not isinstance(result, Accepted):
        raise SystemExit(f"the workload's body was not accepted by ingest: {result}")
    return result.change


def _variants(rng: random.Random, count: int = 1024) -> list[tuple[dict[str, Any], list[str]]]:
    """Issue snapshots (without summary and project) and the changelog fields each changes:
    drawn once, so that building 200,000 bodies costs less than ingesting them."""
    variants = []
    for _ in range(count):
        status, status_id, category = rng.choice(STATUSES)
        priority, priority_id = rng.choice(PRIORITIES)
        fields: dict[str, Any] = {
            "status": {"name": status, "id": status_id, "statusCategory": {"key": category}},
            "priority": {"name": priority, "id": priority_id},
            "labels": sorted(rng.sample(LABELS, rng.choice((0, 1, 2, 3)))),
            "assignee": {"accountId": f"557058:{rng.randrange(AUTHORS):08x}-assignee",
                         "displayName": "Assignee"},
            "duedate": f"2027-0{rng.randrange(1, 10)}-1{rng.randrange(10)}",
            "customfield_10016": rng.choice((1, 2, 3, 5, 8, 13))}
        variants.append((fields, rng.sample(CHANGEABLE, rng.choice((1, 1, 2, 2, 3)))))
    return variants


def _body(variant: tuple[dict[str, Any], list[str]], timestamp: int, issue: int, n: int,
          user: dict[str, Any], site: str) -> bytes:
    """A `jira:issue_updated` body whose changelog names one to three fields; the issue
    snapshot carries their values after the change (ingest reads them from there)."""
    project = PROJECTS[issue % len(PROJECTS)]
    fields = {**variant[0], "project": {"key": project},
              "summary": f"Issue {issue}: rework the {LABELS[n % len(LABELS)]} part of the "
                         f"next {project} release, revision {n}"}
    items = [{"field": name, "fieldtype": "custom" if name.startswith("custom") else "jira",
              "fieldId": name, "from": None, "fromString": "before", "to": None,
              "toString": str(fields[name])[:40]} for name in variant[1]]
    return orjson.dumps({
        "timestamp": timestamp, "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_updated", "user": user,
        "issue": {"id": str(10000 + issue), "self": f"https://{site}/rest/api/2/issue/"
                  f"{10000 + issue}", "key": f"{project}-{issue}", "fields": fields},
        "changelog": {"id": str(100000 + n), "items": items}})


def expected_windows(changes: Iterable[dict[str, Any]], interval: int
                     ) -> dict[tuple[str, int], Expected]:
    """The windows of the workload by the collapse's rules, from source times alone (no
    lateness): latest change per field, the last author naming a person, the count."""
    size = interval * 1000
    grouped: dict[tuple[str, int], list[tuple[int, str, int, dict[str, Any]]]] = {}
    for n, change in enumerate(changes):
        at = _ms(change["occurred_at"])
        grouped.setdefault((change["task_id"], at - at % size), []).append(
            (at, change.get("tiebreak") or "", n, change))
    expected = {}
    for key, members in grouped.items():
        members.sort(key=lambda m: m[:3])
        people = [m[3]["author"] for m in members if m[3]["author"].get("kind") != "technical"]
        author = (people or [members[-1][3]["author"]])[-1].get("id")
        names = sorted({name for m in members for name in (m[3].get("changes") or {})})
        expected[key] = Expected(author, tuple(names), len(members))
    return expected


def _ms(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def load(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]],
         transactional: bool = False) -> float:
    """Publish the records as the ingest stage's producer would (Java partitioner, lz4). With
    `transactional`, in one transaction, so a read_committed consumer sees them all at once;
    returns the wall time just before the commit (everything else already flushed)."""
    config: dict[str, object] = {
        "bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 5,
        "compression.type": "lz4", "batch.num.messages": 10000,
        "queue.buffering.max.messages": 500000}
    if transactional:
        config["transactional.id"] = f"bench-peer-load-{uuid.uuid4()}"
    producer = Producer(config)
    if transactional:
        producer.init_transactions(30)
        producer.begin_transaction()
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise SystemExit(f"could not publish the workload to {topic}")
    before_commit = time.time()
    if transactional:
        producer.commit_transaction(120)
    return before_commit


# --- measuring processes ------------------------------------------------------------------


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


class Sampler:
    """CPU seconds and RSS of a family of processes, every 0.1 s, in a thread of its own."""

    def __init__(self, family: Callable[[], list[psutil.Process]], every: float = 0.1) -> None:
        self._family = family
        self._every = every
        self.times: list[float] = []
        self.cpu: list[float] = []
        self.rss: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._sample(self._family())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        members, listed = self._family(), time.monotonic()
        while not self._stop.wait(self._every):
            if time.monotonic() - listed > 1:  # children may restart; look again each second
                members, listed = self._family(), time.monotonic()
            self._sample(members)

    def _sample(self, members: list[psutil.Process]) -> None:
        cpu = rss = 0.0
        for process in members:
            with contextlib.suppress(psutil.Error):
                cpu += _cpu(process)
                rss += process.memory_info().rss
        self.times.append(time.time())
        self.cpu.append(cpu)
        self.rss.append(rss / 2**20)

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds from the last sample at or before `start` to the first at or after
        `end` (wall times, epoch seconds)."""
        first = max(0, bisect.bisect_right(self.times, start) - 1)
        last = min(len(self.times) - 1, bisect.bisect_left(self.times, end))
        return self.cpu[last] - self.cpu[first]

    def peak_rss(self) -> float:
        return max(self.rss, default=0.0)


@dataclass
class Run:
    """One contender's figures over the workload."""

    name: str
    rate: float  # events/s
    cpu: float  # CPU seconds over the timed span, the measured processes
    peak_rss_mib: float | None
    broker_cpu: float = 0.0  # the broker's CPU seconds over the same span
    windows: dict[tuple[str, int], Expected] = field(default_factory=dict)
    extra: str = ""
    records: int = 0  # records its output holds (sentinels included)

    def cpu_per_100k(self, events: int) -> float:
        return self.cpu / events * 100_000


# --- the contenders -----------------------------------------------------------------------


def bare_loop(bootstrap: str, source: str, sink: str, expected: int) -> Run:
    """consume(batch) → orjson.loads → produce keyed by the task id, until `expected` are
    through; CPU of this process over that span."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                         "queue.buffering.max.messages": 500000})
    consumer.subscribe([source])
    me = psutil.Process()
    seen, started, cpu = 0, 0.0, 0.0
    while seen < expected:
        # A short wait: consume() waits out its timeout for a batch it cannot fill, the last.
        for message in consumer.consume(5000, 0.05):
            if message.error():
                continue
            if not started:
                started, cpu = time.perf_counter(), _cpu(me)
            change = orjson.loads(message.value() or b"{}")
            key = change["task_id"].encode()
            while True:
                try:
                    producer.produce(sink, value=message.value(), key=key)
                    break
                except BufferError:
                    producer.poll(0.01)
            seen += 1
        producer.poll(0)
    producer.flush(60)
    elapsed, cpu = time.perf_counter() - started, _cpu(me) - cpu
    consumer.close()
    return Run("bare loop", seen / elapsed, cpu, None)


def build_peer() -> None:
    """`mvn -q -f bench/streams/pom.xml package`: fetches Kafka Streams once into ~/.m2, then
    builds offline."""
    print("building the Kafka Streams peer: mvn -q -f bench/streams/pom.xml package")
    started = time.monotonic()
    done = subprocess.run(["mvn", "-q", "-f", str(STREAMS / "pom.xml"), "package"], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the Kafka Streams peer did not build:\n{done.stdout[-3000:]}"
                         f"{done.stderr[-3000:]}")
    print(f"  built in {time.monotonic() - started:.0f} s ({JAR.relative_to(ROOT)})")


def streams_run(bootstrap: str, source: str, prefix: str, guarantee: str, threads: int,
                settings: Settings, partitions: int, log: Path) -> Run:
    """The Kafka Streams peer over the input topic, until it stops by itself."""
    label = f"{'eos' if guarantee == 'exactly_once_v2' else 'alos'}-{threads}"
    app_id, output = f"{prefix}streams-{label}", f"{prefix}streams-{label}.out"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(output, partitions, -1)]).values():
        future.result()
    state_dir = ROOT / ".local" / "bench-streams" / app_id
    java_opts = os.environ.get("BENCH_STREAMS_JAVA_OPTS", "").split()
    command = ["java", *java_opts, "-cp", f"{JAR}{os.pathsep}{JAR.parent / 'lib' / '*'}",
               MAIN_CLASS, "--bootstrap", bootstrap, "--input", source, "--output", output,
               "--application-id", app_id, "--guarantee", guarantee, "--threads", str(threads),
               "--interval-seconds", str(settings.collapse_interval_seconds),
               "--grace-seconds", str(settings.grace_seconds), "--state-dir", str(state_dir)]
    broker = broker_process()
    with log.open("ab") as errors:
        errors.write(f"\n--- {' '.join(command)}\n".encode())
        errors.flush()
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=errors)
        assert process.stdout is not None
        jvm = psutil.Process(process.pid)
        lines: list[dict[str, Any]] = []
        with Sampler(lambda: [jvm]) as sampler, Sampler(
                lambda: [broker] if broker else [], every=0.25) as broker_sampler:
            for raw in process.stdout:
                with contextlib.suppress(orjson.JSONDecodeError):
                    lines.append(orjson.loads(raw))
            code = process.wait()
    shutil.rmtree(state_dir, ignore_errors=True)
    summary = next((line for line in lines if line.get("event") == "summary"), None)
    if code != 0 or summary is None:
        raise SystemExit(f"the Kafka Streams peer ({label}) failed with exit code {code}: "
                         f"{summary}; its log: {log}")
    start = summary["first_record_ms"] / 1000
    end = max(summary["last_record_ms"], summary["last_emit_ms"]) / 1000
    windows = {}
    for _key, value in read_all(bootstrap, output):
        update = orjson.loads(value)
        windows[(update["task_id"], _ms(update["window_start"]))] = Expected(
            update["author_id"], tuple(update["fields"]), update["count"])
    name = f"Kafka Streams {'EOS v2' if guarantee == 'exactly_once_v2' else 'at-least-once'}, "\
           f"{threads} thread{'s' if threads > 1 else ''}"
    return Run(name, summary["records"] / (end - start), sampler.cpu_between(start, end),
               sampler.peak_rss(), broker_sampler.cpu_between(start, end),
               _without_sentinels(windows),
               f"{summary['records']:,} records read, {summary['windows']:,} windows emitted, "
               f"{summary['dropped_records']:,.0f} records dropped (late)",
               summary["windows"])


def collapse_run(base: Settings, workload: Workload, log: Path) -> tuple[Run, float]:
    """boxsync's collapse stage alone (its two processes, filters off, PostgreSQL cache
    writes on) over its own `sync.changes`; returns the run and its late changes."""
    settings = base.model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:6]}.",
                                       "filters_enabled": False})
    with scratch_database(settings, "peer") as scratch:
        settings = settings.model_copy(update={"database_url": SecretStr(scratch.url)})
        create_topics(settings)
        worker = WorkerProcess(worker_env(
            settings, BOXSYNC_WEB_PORT=str(free_port()), BOXSYNC_WORKER_STAGES="collapse",
            BOXSYNC_COLLAPSE_PROCESSES=str(settings.collapse_processes),
            BOXSYNC_LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING")), log)
        try:
            worker.start()
            assert worker.process is not None
            root = psutil.Process(worker.process.pid)
            broker = broker_process()
            with Sampler(lambda: [root, *root.children(recursive=True)]) as sampler, Sampler(
                    lambda: [broker] if broker else [], every=0.25) as broker_sampler:
                updates, start, end = _collapse_drain(settings, worker, workload, log)
            metrics = filters.scrape(worker)
        finally:
            worker.stop()
            forget(settings)
    windows = {}
    for _, value in updates:
        update = orjson.loads(value)
        windows[(update["task_id"], _ms(update["window_start"]))] = Expected(
            (update.get("author") or {}).get("id"), tuple(sorted(update["changes"])),
            update["collapsed"])
    late = sum(metrics.get("boxsync_events_late_total", {}).values())
    kept = _without_sentinels(windows)
    run = Run(f"boxsync collapse alone ({settings.collapse_processes} processes)",
              workload.events / (end - start), sampler.cpu_between(start, end),
              sampler.peak_rss(), broker_sampler.cpu_between(start, end), kept,
              f"{len(kept):,} updates emitted, {late:,.0f} late changes (joined the task's "
              f"next update)", len(updates))
    return run, late


def _collapse_drain(settings: Settings, worker: WorkerProcess, workload: Workload, log: Path
                    ) -> tuple[list[tuple[bytes, bytes]], float, float]:
    """Load the workload in one transaction and read task.updates until every change is in
    a closed window; the updates, the load's commit time and the last update's CreateTime."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"bench-{uuid.uuid4()}", "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})
    consumer.subscribe([TASK_UPDATES.full_name(settings.topic_prefix)])
    consumer.consume(1, 1.0)  # joined before the clock starts
    start = load(settings.kafka_bootstrap, SYNC_CHANGES.full_name(settings.topic_prefix),
                 workload.records, transactional=True)
    updates: list[tuple[bytes, bytes]] = []
    last_ms, accounted, drained_at, next_look = 0, 0.0, None, 0.0
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            messages = consumer.consume(5000, 0.05)
            for message in messages:
                if message.error():
                    continue
                key = message.key() or b""
                updates.append((key, message.value() or b""))
                if int(key.rsplit(b":", 1)[1]) < SENTINEL_BASE_ID:
                    last_ms = max(last_ms, message.timestamp()[1])
            if drained_at is None:
                if time.monotonic() >= next_look:  # /metrics costs the worker too
                    next_look = time.monotonic() + 0.5
                    accounted = changes_accounted(worker)
                if accounted >= workload.events:
                    drained_at = time.monotonic()
            elif not messages and time.monotonic() - drained_at > 2:
                break
    finally:
        consumer.close()
    if drained_at is None:
        raise SystemExit(f"the collapse did not finish: {accounted:.0f} of {workload.events} "
                         f"changes in closed windows; worker log: {log}")
    return updates, start, last_ms / 1000


def read_all(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    """Every committed record of a topic, up to its end as of now."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
        pending = {p for p, end in ends.items() if end > 0}
        found: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(5000, 0.5):
                if message.error() is None:
                    found.append((message.key() or b"", message.value() or b""))
            for tp in consumer.position([TopicPartition(topic, p) for p in list(pending)]):
                if tp.offset >= ends[tp.partition]:
                    pending.discard(tp.partition)
        return found
    finally:
        consumer.close()


def _without_sentinels(windows: dict[tuple[str, int], Expected]
                       ) -> dict[tuple[str, int], Expected]:
    return {key: value for key, value in windows.items()
            if int(key[0].rsplit(":", 1)[1]) - 10000 < SENTINEL_BASE_ID}


# --- checking the outputs -----------------------------------------------------------------


def check(run: Run, expected: dict[tuple[str, int], Expected]) -> Counter[str]:
    """How a run's windows compare with the workload's windows by the rules."""
    counts: Counter[str] = Counter()
    for key, want in expected.items():
        got = run.windows.get(key)
        if got is None:
            counts["missing"] += 1
        elif got == want:
            counts["exact"] += 1
        else:
            counts["author differs" if got.author != want.author else
                   "fields or count differ"] += 1
    counts["extra"] = sum(1 for key in run.windows if key not in expected)
    return counts


def compare(peer: Run, boxsync: Run, workload: Workload) -> dict[str, int]:
    """Kafka Streams' windows against boxsync's updates: (task, window) pairs both closed,
    their authors, and the pairs only one side has, with the reason where it can be told."""
    both = peer.windows.keys() & boxsync.windows.keys()
    same = sum(1 for key in both if peer.windows[key].author == boxsync.windows[key].author)
    only_boxsync = boxsync.windows.keys() - peer.windows.keys()
    only_peer = peer.windows.keys() - boxsync.windows.keys()
    # boxsync puts a change that arrives after its window closed into the task's next update
    # (a window of its own when none is open): such updates hold changes of other windows.
    late_windows = {key for key in only_boxsync if key not in workload.expected}
    return {
        "both closed": len(both), "same author": same, "author differs": len(both) - same,
        "same fields and count": sum(1 for key in both
                                     if peer.windows[key].fields == boxsync.windows[key].fields
                                     and peer.windows[key].count == boxsync.windows[key].count),
        "only boxsync": len(only_boxsync),
        "only boxsync, a window of late changes": len(late_windows),
        "only Kafka Streams": len(only_peer),
    }


# --- the run ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--issues", type=int, default=20_000)
    parser.add_argument("--spread", type=float, default=100.0)
    parser.add_argument("--no-build", action="store_true",
                        help="use bench/streams/target as it is (no mvn package)")
    args = parser.parse_args()
    base = load_settings()
    if not base.local_dir.is_absolute():
        base = base.model_copy(update={"local_dir": ROOT / base.local_dir})
    if not args.no_build or not JAR.exists():
        build_peer()
    interval = base.collapse_interval_seconds
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    started = time.monotonic()
    workload = make_workload(args.events, args.issues, args.spread, interval,
                             site=f"{prefix.rstrip('.')}.atlassian.net")
    print(f"workload: {workload.events:,} ChangeEvents (+{SENTINELS} sentinels) over "
          f"{workload.tasks:,} tasks, mean {workload.mean_bytes:.0f} bytes, source times over "
          f"{args.spread:.0f} s, {len(workload.expected):,} (task, window) pairs of "
          f"{interval} s; made by boxsync's ingest logic in {time.monotonic() - started:.1f} s; "
          f"{base.partitions} partitions, {os.cpu_count()} cores")
    log = ROOT / ".local" / "bench-peer.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    try:
        runs, bare, late = measure_all(base, workload, prefix, log)
    finally:
        delete_topics(base.kafka_bootstrap, prefix)
        _delete_groups(base.kafka_bootstrap, prefix)
    record("peer", report(runs, bare, late, workload))


def measure_all(base: Settings, workload: Workload, prefix: str, log: Path
                ) -> tuple[list[Run], list[Run], float]:
    bootstrap = base.kafka_bootstrap
    source, sink = f"{prefix}changes", f"{prefix}bare.out"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(t, base.partitions, -1)
                                       for t in (source, sink, f"{prefix}warm")]).values():
        future.result()
    load(bootstrap, source, workload.records)
    total = len(workload.records)
    bare_loop(bootstrap, source, f"{prefix}warm", total)  # warms the broker's JIT
    bare = [bare_loop(bootstrap, source, sink, total)]
    print(f"bare confluent-kafka consume→parse→produce: {bare[0].rate:10,.0f} events/s, "
          f"{bare[0].cpu_per_100k(total):.2f} CPU s per 100,000")
    runs: list[Run] = []
    # EOS and at-least-once around boxsync's run, so that a machine drifting faster or slower
    # over the runs favours no side.
    plan: list[tuple[str, int] | None] = [("exactly_once_v2", 1), ("at_least_once", 1), None,
                                          ("at_least_once", 2), ("exactly_once_v2", 2)]
    late = 0.0
    for step in plan:
        if step is None:
            run, late = collapse_run(base, workload, log)
        else:
            run = streams_run(bootstrap, source, prefix, step[0], step[1], base,
                              base.partitions, log)
        runs.append(run)
        print(f"{run.name}: {run.rate:10,.0f} events/s, {run.cpu_per_100k(workload.events):.2f}"
              f" CPU s per 100,000, peak RSS {run.peak_rss_mib:,.0f} MiB, broker "
              f"{run.broker_cpu:.1f} CPU s; {run.extra}")
    bare.append(bare_loop(bootstrap, source, sink, total))
    print(f"bare loop again, after:                   {bare[1].rate:10,.0f} events/s, "
          f"{bare[1].cpu_per_100k(total):.2f} CPU s per 100,000")
    return runs, bare, late


def report(runs: list[Run], bare: list[Run], late: float, workload: Workload) -> list[Row]:
    events = workload.events
    bare_rate = sum(r.rate for r in bare) / len(bare)
    bare_cpu = sum(r.cpu_per_100k(len(workload.records)) for r in bare) / len(bare)
    boxsync = next(r for r in runs if r.name.startswith("boxsync"))
    peers = [r for r in runs if r is not boxsync]
    eos = max((r for r in peers if "EOS" in r.name), key=lambda r: r.rate)
    eos_cpu, eos_rss = eos.cpu_per_100k(events), eos.peak_rss_mib or 1.0
    print(f"\nagainst the bare loop ({bare_rate:,.0f} events/s, {bare_cpu:.2f} CPU s per "
          f"100,000: the mean of before and after) and {eos.name} (the faster EOS v2 run):")
    print(f"  {'':<40} {'events/s':>9} {'/bare':>6} {'/EOS':>5}  {'CPU s/100k':>10} "
          f"{'/bare':>6} {'/EOS':>5}  {'peak RSS':>8} {'/EOS':>5}  {'broker CPU s':>12}")
    for run in runs:
        cpu, rss = run.cpu_per_100k(events), run.peak_rss_mib or 0.0
        print(f"  {run.name:<40} {run.rate:9,.0f} {run.rate / bare_rate:6.2f} "
              f"{run.rate / eos.rate:5.2f}  {cpu:10.2f} {cpu / bare_cpu:6.1f} "
              f"{cpu / eos_cpu:5.2f}  {rss:6,.0f} M {rss / eos_rss:5.2f}  {run.broker_cpu:12.1f}")
    print("  (CPU: user + system of the measured processes over the timed span; the broker's "
          "over the same span on its own)")
    print(f"\nwindows by the rules, from the workload's source times: "
          f"{len(workload.expected):,}")
    for run in runs:
        counts = check(run, workload.expected)
        print(f"  {run.name}: " + ", ".join(f"{name} {count:,}" for name, count in
                                           sorted(counts.items()) if count))
    print("  (missing: a window whose changes came after it closed: Kafka Streams drops them, "
          "counted in its dropped-records; boxsync puts them into the task's next update; "
          "extra: such an update of boxsync's in a window that had no changes of its own)")
    checks = {}
    for peer in peers:
        checks[peer.name] = agreement = compare(peer, boxsync, workload)
        print(f"{peer.name} against boxsync's task.updates: both closed "
              f"{agreement['both closed']:,} (task, window) pairs, same author "
              f"{agreement['same author']:,}, author differs {agreement['author differs']:,}, "
              f"same fields and count {agreement['same fields and count']:,}; only boxsync "
              f"{agreement['only boxsync']:,} (of them "
              f"{agreement['only boxsync, a window of late changes']:,} of late changes "
              f"only), only Kafka Streams {agreement['only Kafka Streams']:,}")
    print(f"boxsync late changes: {late:,.0f}; Kafka Streams dropped (late) records: " +
          ", ".join(f"{p.extra.split(', ')[2].split()[0]}" for p in peers))
    sentinel_updates = boxsync.records - len(boxsync.windows)
    print(f"the sentinels' own windows: boxsync closed {sentinel_updates} of them by wall-clock "
          f"time (interval + grace after the partition went quiet); Kafka Streams "
          f"{', '.join(f'{p.records - len(p.windows)}' for p in peers)}: its stream time "
          f"moves only with new records, so a quiet key's last window never closes")
    rate_ratio = boxsync.rate / eos.rate
    rss_ratio = (boxsync.peak_rss_mib or 0.0) / eos_rss
    met = rate_ratio >= TARGET_RATE_RATIO and rss_ratio <= 1.0
    print(f"boxsync collapse alone / {eos.name}: {rate_ratio:.2f} times the events/s "
          f"(target >= {TARGET_RATE_RATIO:.1f}), {rss_ratio:.2f} times the peak RSS (target "
          f"<= 1.0): {verdict(met)}")
    agreement = checks[eos.name]
    rows = [Row("bare loop over ChangeEvents (mean)",
                f"{bare_rate:,.0f} events/s, {bare_cpu:.2f} CPU s/100k")]
    rows += [Row(run.name, f"{run.rate:,.0f} events/s, {run.cpu_per_100k(events):.2f} CPU s"
                 f"/100k, {run.peak_rss_mib or 0:,.0f} MiB") for run in runs]
    rows += [
        Row(f"boxsync collapse / {eos.name.replace('Kafka Streams ', 'KStreams ')}",
            f"{rate_ratio:.2f} events/s, {rss_ratio:.2f} RSS, "
            f"{boxsync.cpu_per_100k(events) / eos_cpu:.2f} CPU",
            f"≥ {TARGET_RATE_RATIO:.1f} events/s, RSS ≤ 1.0", verdict(met)),
        Row("boxsync collapse / bare loop", f"{boxsync.rate / bare_rate:.2f} events/s"),
        Row("(task, window) both closed, same author (EOS)",
            f"{agreement['same author']:,} of {agreement['both closed']:,}"),
        Row("only boxsync / only KStreams (EOS); late changes",
            f"{agreement['only boxsync']:,} / {agreement['only Kafka Streams']:,}; "
            f"{late:,.0f}")]
    return rows


def _delete_groups(bootstrap: str, prefix: str) -> None:
    """The Kafka Streams applications' consumer groups (named by their application ids)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    with contextlib.suppress(Exception):
        groups = [g.group_id for g in admin.list_consumer_groups().result(10).valid
                  if g.group_id.startswith(prefix)]
        if groups:
            for future in admin.delete_consumer_groups(groups, request_timeout=10).values():
                with contextlib.suppress(Exception):
                    future.result()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
