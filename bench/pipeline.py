"""`make bench`: boxsync's hot path against a bare confluent-kafka loop, side by side, with the
filters off and on.

Workload (issue 2): 200,000 `jira:issue_updated` bodies of about 680 bytes over 20,000 issues
of 50 Jira projects (each issue with 0 to 3 labels), by 200 authors, source times spread over
100 seconds. Every contender reads the same bytes from the same local broker in the same run:

- baseline: one consume(batch) → orjson.loads → produce loop, one hop, no state, no commit,
  measured before and after the boxsync runs;
- boxsync without filters (`BOXSYNC_FILTERS_ENABLED=false`): a real `boxsync worker` process:
  ingest (normalize, re-key, transactional produce to sync.changes) and collapse (windows,
  PostgreSQL cache writes, transactional produce to task.updates), from the first change it
  writes to the update that completes the workload;
- boxsync with filters (issue 4): the same with the permission filter per change and the box
  routing per update, against 1,000 boxes and 10,000 permission grants (bench.filters), so
  that most updates reach several boxes and a few percent of the changes are denied.

The runs with and without filters alternate, `--rounds` of each (2 by default: off, on, on,
off), and the filter cost is 1 - (mean rate with filters / mean rate without): on a shared
2-core machine one run of each moves by 10-20 % on its own. Every boxsync run has its own
topics and its own scratch database (bench.scratch), so each starts from empty tables and
inherits nothing from another.

The worker is started and ready (every stage process has its partitions) before the bodies are
published, in one Kafka transaction: it sees all of them at once, as the bare loop does, and
its start-up neither counts nor competes for the cores. The clock for boxsync is the records'
own CreateTimes (first record on sync.changes, the update that brings the accounted changes to
the workload size). A
few sentinel events far ahead in source time close the last windows at once, as live traffic
would, instead of waiting interval + grace of wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr

from bench import filters
from bench.results import Row, record, verdict
from bench.scratch import scratch_database
from processors.settings import Settings, load_settings
from schemas.topics import JIRA_EVENTS, SYNC_CHANGES, TASK_UPDATES
from tests.support.kafka import (
    WorkerProcess,
    create_topics,
    delete_topics,
    free_port,
    worker_env,
)

ROOT = Path(__file__).resolve().parents[1]
SITE = "bench.atlassian.net"
SENTINEL_BASE_ID = 9_000_000
PROJECTS = tuple(f"P{n:02d}" for n in range(50))
LABELS = ("backend", "frontend", "infra", "security", "ux", "data", "mobile", "api")
AUTHORS = 200
TARGET_RATIO = 0.30  # issue 2: boxsync end to end / bare loop
TARGET_INGEST_RATIO = 0.50  # issue 3: ingest alone / bare loop
FILTER_BUDGET = 0.20  # issue 4: the filters may cost at most 20 % of the unfiltered rate


@dataclass(frozen=True)
class Workload:
    bodies: list[tuple[bytes, bytes]]  # (key, value)
    sentinels: list[tuple[bytes, bytes]]
    events: int
    mean_bytes: float
    users: list[dict[str, Any]]  # the authors, as Jira's `user` objects


def make_workload(events: int, issues: int, spread_seconds: float, seed: int = 7,
                  site: str = SITE) -> Workload:
    """Bodies sorted by source time, as a live Jira site emits them; about 680 bytes each."""
    rng = random.Random(seed)
    start_ms = int((time.time() - 3600) // 10 * 10 * 1000)
    users = [{"accountId": f"557058:{i:08x}-aaaa-bbbb-cccc-{i:012x}", "displayName": f"User {i}",
              "active": True, "accountType": "atlassian"} for i in range(AUTHORS)]
    # Each issue is busy for a short stretch: about two windows of events per issue.
    busy = {i: start_ms + int(rng.uniform(0, spread_seconds - 8) * 1000) for i in range(issues)}
    labels = {i: sorted(rng.sample(LABELS, rng.choice((0, 1, 1, 2, 2, 3))))
              for i in range(issues)}
    raw = []
    for n in range(events):
        issue_id = rng.randrange(issues)
        timestamp = busy[issue_id] + rng.randrange(0, 8000)
        raw.append((timestamp, issue_id, n))
    raw.sort()
    bodies = [(_key(issue_id), _body(ts, issue_id, n, rng.choice(users), labels[issue_id], site))
              for ts, issue_id, n in raw]
    last = raw[-1][0]
    # Later traffic, far ahead: closes every partition's last windows at once. Their author
    # may browse every project, so the filters let them through too.
    sentinels = [(_key(SENTINEL_BASE_ID + i),
                  _body(last + 1_000_000, SENTINEL_BASE_ID + i, events + i, users[0], [], site))
                 for i in range(64)]
    mean = sum(len(v) for _, v in bodies) / events
    return Workload(bodies, sentinels, events, mean, users)


def _project(issue_id: int) -> str:
    return PROJECTS[issue_id % len(PROJECTS)]


def _key(issue_id: int) -> bytes:
    return f"{_project(issue_id)}-{issue_id}".encode()


def _body(timestamp: int, issue_id: int, changelog_id: int, user: dict[str, object],
          labels: list[str], site: str = SITE) -> bytes:
    project = _project(issue_id)
    return orjson.dumps({
        "timestamp": timestamp, "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_updated", "user": user,
        "issue": {"id": str(10000 + issue_id), "self": f"https://{site}/rest/api/2/issue/"
                  f"{10000 + issue_id}", "key": f"{project}-{issue_id}", "fields": {
                      "summary": f"Issue {issue_id} rev {changelog_id}",
                      "status": {"name": "In Progress", "id": "3",
                                 "statusCategory": {"id": 4, "key": "indeterminate"}},
                      "labels": labels, "project": {"key": project}}},
        "changelog": {"id": str(100000 + changelog_id), "items": [
            {"field": "summary", "fieldtype": "jira", "fieldId": "summary", "from": None,
             "fromString": "old", "to": None, "toString": f"rev {changelog_id}"}]},
    })


def load(bootstrap: str, topic: str, bodies: list[tuple[bytes, bytes]],
         at_once: bool = False) -> None:
    """Publish the bodies. `at_once`: in one Kafka transaction, so that a running worker (a
    read_committed consumer) sees none of them until all are there, as if they had been
    loaded before it started, without its start-up in the measured time."""
    config: dict[str, object] = {
        "bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000,
        "queue.buffering.max.messages": 500000, "partitioner": "murmur2_random"}
    if at_once:
        config["transactional.id"] = f"bench-load-{uuid.uuid4()}"
    producer = Producer(config)
    if at_once:
        producer.init_transactions(30)
        producer.begin_transaction()
    for key, value in bodies:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
    if at_once:
        producer.commit_transaction(120)
    producer.flush(60)


def bare_loop(bootstrap: str, source: str, sink: str, expected: int) -> float:
    """events/s of consume(batch) → orjson.loads → produce, until `expected` are through."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                         "queue.buffering.max.messages": 500000})
    consumer.subscribe([source])
    seen, started = 0, 0.0
    while seen < expected:
        for message in consumer.consume(5000, 1.0):
            if message.error():
                continue
            if not started:
                started = time.perf_counter()
            body = orjson.loads(message.value() or b"{}")
            key = str(body["issue"]["id"]).encode()
            while True:
                try:
                    producer.produce(sink, value=message.value(), key=key)
                    break
                except BufferError:
                    producer.poll(0.01)
            seen += 1
        producer.poll(0)
    producer.flush(60)
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen / elapsed


@dataclass
class BoxsyncResult:
    rate: float  # events/s, raw → task.updates
    ingest_rate: float  # events/s, raw → sync.changes
    peak_rss_mib: float  # the worker with its stage processes
    updates: int  # on task.updates, sentinels left out
    late: float  # changes that came after their window closed (they join the next update)
    filtered: dict[str, float] = field(default_factory=dict)  # boxsync_updates_filtered_total
    closed: dict[str, float] = field(default_factory=dict)  # boxsync_changes_closed_total
    # The same as PSS (shared pages divided among the processes sharing them: the sum of
    # RSS counts every shared library and page once per process), and each process's peak RSS.
    peak_pss_mib: float = 0.0
    peak_rss_by_process: dict[str, float] = field(default_factory=dict)


def boxsync_run(settings: Settings, workload: Workload, log: Path,
                setup: Callable[[Settings], None] | None = None) -> BoxsyncResult:
    """One real worker over the workload; `setup` runs after the topics exist and before the
    worker starts (the reference data of the filtered run). The worker is started and ready
    before the raw bodies are published, all at once (one transaction)."""
    create_topics(settings)
    if setup is not None:
        setup(settings)
    raw_topic = JIRA_EVENTS.full_name(settings.topic_prefix)
    worker = WorkerProcess(worker_env(settings, BOXSYNC_WEB_PORT=str(free_port()),
                                      BOXSYNC_INGEST_PROCESSES=str(settings.ingest_processes),
                                      BOXSYNC_COLLAPSE_PROCESSES=str(
                                          settings.collapse_processes),
                                      BOXSYNC_LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL",
                                                                       "WARNING")), log)
    peak_rss, peak_pss = 0.0, 0.0
    peaks: dict[str, float] = {}
    broker = broker_process()
    try:
        worker.start()  # ready: every stage process has started and taken its partitions
        assert worker.process is not None
        proc = psutil.Process(worker.process.pid)
        family = [proc, *proc.children()]
        started_cpu = {p.pid: _cpu(p) for p in family}
        broker_cpu, database_cpu = _cpu(broker), _database_cpu()
        load(settings.kafka_bootstrap, raw_topic, workload.bodies, at_once=True)
        bench_cpu = _cpu(psutil.Process())  # after the load: the bench's own watching
        updates, last_ms = 0, 0
        consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                             "group.id": f"bench-{uuid.uuid4()}", "auto.offset.reset": "earliest",
                             "isolation.level": "read_committed"})
        consumer.subscribe([TASK_UPDATES.full_name(settings.topic_prefix)])
        deadline = time.monotonic() + 600
        accounted, drained_at, sent_sentinels = 0.0, None, False
        # Connected now, so that publishing the sentinels later costs no connection set-up.
        later = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 0,
                          "partitioner": "murmur2_random"})
        later.list_topics(raw_topic, timeout=10)
        watch = filters.CommitWatch(settings, "ingest", [raw_topic], one_transaction=True)
        # The watching (commit positions, RSS, /metrics) runs every half second only: the
        # bench shares the two cores with what it measures, and rendering /metrics costs the
        # worker a few milliseconds each time.
        next_look = 0.0
        while time.monotonic() < deadline:
            messages = consumer.consume(5000, 0.05)
            if not sent_sentinels and watch.done():  # a cheap request, so asked often
                # Published once ingest has committed the workload: re-keying reads the raw
                # partitions unevenly, and stream time that ran ahead would make events late.
                for key, value in workload.sentinels:
                    later.produce(raw_topic, value=value, key=key)
                later.flush(30)
                sent_sentinels = True
            looking = time.monotonic() >= next_look
            if looking:
                next_look = time.monotonic() + 0.5
                rss, pss = family_memory(proc, peaks)
                peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            for message in messages:
                if message.error():
                    continue
                # The key is the task id: no need to parse the update (the bench shares the
                # cores with what it measures).
                if int((message.key() or b"").rsplit(b":", 1)[1]) >= SENTINEL_BASE_ID:
                    continue
                updates += 1
                last_ms = max(last_ms, message.timestamp()[1])
            if drained_at is None:
                if looking:
                    accounted = changes_accounted(worker)
                if accounted >= workload.events:
                    drained_at = time.monotonic()  # every change is closed or denied
            elif not messages and time.monotonic() - drained_at > 2:
                break
        consumer.close()
        watch.close()
        if drained_at is None:
            raise SystemExit(f"boxsync did not finish: {accounted:.0f} of {workload.events} "
                             f"events; worker log: {log}")
        metrics = filters.scrape(worker)
        filtered = metrics.get("boxsync_updates_filtered_total", {})
        late = sum(metrics.get("boxsync_events_late_total", {}).values())
        cpu = {"bench (this process)": _cpu(psutil.Process()) - bench_cpu,
               "broker": _cpu(broker) - broker_cpu, "postgres": _database_cpu() - database_cpu,
               "worker (faust, web)": _cpu(proc) - started_cpu[proc.pid]}
        for child in proc.children():  # stage processes are named bs-<stage>
            if child.name().startswith("bs-"):
                cpu[child.name()] = _cpu(child) - started_cpu.get(child.pid, 0.0)
        counts = metrics.get("boxsync_stage_batch_records_count", {})
        sums = metrics.get("boxsync_stage_batch_records_sum", {})
        print("  committed batches (Kafka transactions) per stage: " + ", ".join(
            f"{stage} {count:,.0f} (mean {sums.get(stage, 0) / max(count, 1):,.0f} records)"
            for stage, count in sorted(counts.items())))
        print("  CPU seconds from the load to the last update: " + ", ".join(
            f"{name} {seconds:.1f}" for name, seconds in cpu.items()))
        first_ms, last_change_ms = record_span_ms(settings,
                                                  SYNC_CHANGES.full_name(settings.topic_prefix))
        ingest_rate = workload.events / max(0.001, (last_change_ms - first_ms) / 1000)
        print(f"  of which ingest alone (first to last record on sync.changes): "
              f"{ingest_rate:,.0f} events/s; collapse finished "
              f"{(last_ms - last_change_ms) / 1000:.2f} s after ingest")
        print("  peak RSS per process (MiB): " + ", ".join(
            f"{name} {mib:.0f}" for name, mib in sorted(peaks.items())))
        return BoxsyncResult(workload.events / ((last_ms - first_ms) / 1000), ingest_rate,
                             peak_rss, updates, late, filtered,
                             metrics.get("boxsync_changes_closed_total", {}), peak_pss, peaks)
    finally:
        worker.stop()
        forget(settings)


def family_memory(worker: psutil.Process, peaks: dict[str, float]) -> tuple[float, float]:
    """RSS and PSS (MiB) of the worker with its stage processes, now; each process's peak RSS
    is kept in `peaks` by name (`worker`, `bs-ingest`, ...)."""
    rss = pss = 0.0
    for process in [worker, *worker.children(recursive=True)]:
        try:
            info = process.memory_full_info()  # reads smaps: every half second only
            name = "worker" if process.pid == worker.pid else process.name()
        except psutil.Error:
            continue  # a process that just ended
        rss, pss = rss + info.rss / 2**20, pss + info.pss / 2**20
        peaks[name] = max(peaks.get(name, 0.0), info.rss / 2**20)
    return rss, pss


def ingest_alone_run(base: Settings, workload: Workload) -> float:
    """events/s raw → sync.changes of a worker that runs only the ingest stage
    (`BOXSYNC_WORKER_STAGES=ingest`, its two processes), on topics of its own: the stage by
    itself on the machine, as the bare loop is. Clocked by the CreateTimes of the first and
    the last record it wrote."""
    settings = base.model_copy(update={"topic_prefix": _prefix(), "filters_enabled": False})
    with scratch_database(settings, "ingest") as scratch:
        return _ingest_alone(settings.model_copy(
            update={"database_url": SecretStr(scratch.url)}), workload)


def _ingest_alone(settings: Settings, workload: Workload) -> float:
    log = ROOT / ".local" / "bench-worker-ingest.log"
    create_topics(settings)
    raw_topic = JIRA_EVENTS.full_name(settings.topic_prefix)
    worker = WorkerProcess(worker_env(settings, BOXSYNC_WEB_PORT=str(free_port()),
                                      BOXSYNC_WORKER_STAGES="ingest",
                                      BOXSYNC_INGEST_PROCESSES=str(settings.ingest_processes),
                                      BOXSYNC_LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL",
                                                                       "WARNING")), log)
    watch = None
    try:
        worker.start()
        load(settings.kafka_bootstrap, raw_topic, workload.bodies, at_once=True)
        watch = filters.CommitWatch(settings, "ingest", [raw_topic], one_transaction=True)
        deadline = time.monotonic() + 300
        while not watch.done():
            if time.monotonic() > deadline:
                raise SystemExit(f"ingest did not finish in 300 s; worker log: {log}")
            time.sleep(0.2)
        first_ms, last_ms = record_span_ms(settings,
                                           SYNC_CHANGES.full_name(settings.topic_prefix))
        return workload.events / max(0.001, (last_ms - first_ms) / 1000)
    finally:
        if watch is not None:
            watch.close()
        worker.stop()
        forget(settings)


def forget(settings: Settings) -> None:
    """Remove a run's topics and faust's data directory (`<app id>-data`, in the worker's
    working directory)."""
    delete_topics(settings.kafka_bootstrap, settings.topic_prefix)
    shutil.rmtree(ROOT / f"{settings.topic_prefix}boxsync-data", ignore_errors=True)


def broker_process() -> psutil.Process | None:
    for process in psutil.process_iter(["cmdline"]):
        if "kafka.Kafka" in (process.info["cmdline"] or []):
            return process
    return None


def _database_cpu() -> float:
    """CPU seconds of the local PostgreSQL's processes (its backends come and go; the ones
    of a run live as long as the worker's connections, so the difference covers them)."""
    total = 0.0
    for process in psutil.process_iter(["name"]):
        if process.info["name"] in ("postgres", "postmaster"):
            with contextlib.suppress(psutil.Error):
                total += _cpu(process)
    return total


def _cpu(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return float(times.user + times.system)


def changes_accounted(worker: WorkerProcess) -> float:
    """Change events the worker is done with, from /metrics: those in closed windows (emitted,
    filtered or dropped) and those the permission filter denied before any window (counted
    per change under `boxsync_updates_filtered_total{reason="permission_denied"}`)."""
    metrics = filters.scrape(worker)
    closed = sum(metrics.get("boxsync_changes_closed_total", {}).values())
    denied = metrics.get("boxsync_updates_filtered_total", {}).get("permission_denied", 0.0)
    return closed + denied


def record_span_ms(settings: Settings, topic: str) -> tuple[int, int]:
    """CreateTime of the first and of the last record of a topic (over its partitions)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"bench-{uuid.uuid4()}", "isolation.level": "read_committed"})
    metadata = consumer.list_topics(topic, timeout=10)
    first: list[int] = []
    last: list[int] = []
    for partition in metadata.topics[topic].partitions:
        tp = TopicPartition(topic, partition)
        low, high = consumer.get_watermark_offsets(tp, timeout=10)
        for offset, sink in ((low, first), (max(low, high - 80), last)):
            consumer.assign([TopicPartition(topic, partition, offset)])
            for message in consumer.consume(100, 5):
                if not message.error():
                    sink.append(message.timestamp()[1])
    consumer.close()
    return min(first), max(last)


def run_boxsync(base: Settings, workload: Workload, filtered: bool) -> BoxsyncResult:
    """One boxsync run on topics and a scratch database of its own, with the filters on (and
    the reference data of bench.filters) or off."""
    prefix = _prefix()
    settings = base.model_copy(update={"topic_prefix": prefix, "filters_enabled": filtered})
    name = "filters" if filtered else "pipeline"
    log = ROOT / ".local" / f"bench-worker-{name}.log"
    with scratch_database(settings, name) as scratch:
        settings = settings.model_copy(update={"database_url": SecretStr(scratch.url)})
        if not filtered:
            return boxsync_run(settings, workload, log)
        reference = filters.reference_data(prefix.rstrip("."), PROJECTS, workload.users, LABELS)

        def setup(settings: Settings) -> None:
            filters.publish(settings, reference)
            took = filters.digest(settings, log)
            seconds, cpu, boxes, grants = filters.reader_load(settings, scratch.tenant_url)
            print(f"  reference data: {boxes:,} boxes and {grants:,} grants "
                  f"({reference.denied_pairs} without BROWSE_PROJECTS); a first worker stored "
                  f"them in {took:.0f} s; a collapse process reads them at start-up in "
                  f"{seconds:.2f} s ({cpu:.2f} s of CPU)")
            if (boxes, grants) != (len(reference.boxes), len(reference.grants)):
                raise SystemExit("the reference data read back differs from what was published")

        return boxsync_run(settings, workload, log, setup)


def _prefix() -> str:
    return f"bench{uuid.uuid4().hex[:6]}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--issues", type=int, default=20_000)
    parser.add_argument("--spread", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=2,
                        help="boxsync runs with and without filters, interleaved (ABBA)")
    parser.add_argument("--no-filters", action="store_true",
                        help="only the runs without filters (the issue 2 and 3 figures)")
    args = parser.parse_args()
    base = load_settings()
    if not base.local_dir.is_absolute():
        base = base.model_copy(update={"local_dir": ROOT / base.local_dir})
    prefix = _prefix()
    # One site for every run: each has its own scratch database, so its tasks are new there.
    workload = make_workload(args.events, args.issues, args.spread,
                             site=f"{prefix.rstrip('.')}.atlassian.net")
    print(f"workload: {workload.events:,} jira:issue_updated bodies, {args.issues:,} issues in "
          f"{len(PROJECTS)} projects by {AUTHORS} authors, mean {workload.mean_bytes:.0f} bytes, "
          f"source times over {args.spread:.0f} s; {base.partitions} partitions; "
          f"{os.cpu_count()} cores")

    try:
        bare, ingest_rates, runs = measure_all(base, workload, prefix, args)
    finally:
        delete_topics(base.kafka_bootstrap, prefix)
    record("pipeline", report(bare, ingest_rates, runs[False], runs[True]))


def measure_all(base: Settings, workload: Workload, prefix: str, args: argparse.Namespace
                ) -> tuple[float, list[float], dict[bool, list[BoxsyncResult]]]:
    """The bare loop (mean of before and after), the ingest-alone runs, and the boxsync
    runs by filters on or off."""
    admin = AdminClient({"bootstrap.servers": base.kafka_bootstrap})
    raw, out = f"{prefix}bare.in", f"{prefix}bare.out"
    for future in admin.create_topics([NewTopic(t, base.partitions, -1)
                                       for t in (raw, out, f"{prefix}warm")]).values():
        future.result()
    load(base.kafka_bootstrap, raw, workload.bodies)
    # The broker's JIT warms up over the first runs; warm it before measuring anything, and
    # measure the bare loop before and after boxsync, so neither side gets a warmer broker.
    bare_loop(base.kafka_bootstrap, raw, f"{prefix}warm", len(workload.bodies))
    bare_before = bare_loop(base.kafka_bootstrap, raw, out, len(workload.bodies))
    print(f"bare confluent-kafka consume→parse→produce:  {bare_before:10,.0f} events/s")
    ingest_rates = []
    for _ in range(args.rounds):
        ingest_rates.append(ingest_alone_run(base, workload))
        print(f"boxsync ingest alone, jira.events → sync.changes (a worker running only the "
              f"ingest stage): {ingest_rates[-1]:10,.0f} events/s")
    runs: dict[bool, list[BoxsyncResult]] = {False: [], True: []}
    for filtered in run_order(args.rounds, not args.no_filters):
        print(f"boxsync, filters {'on (1,000 boxes, 10,000 grants)' if filtered else 'off'}:")
        result = run_boxsync(base, workload, filtered)
        runs[filtered].append(result)
        print(f"boxsync jira.events → task.updates, filters {'on: ' if filtered else 'off:'} "
              f"{result.rate:10,.0f} events/s ({result.updates:,} updates emitted, "
              f"{workload.events / result.updates:.1f} events each, {result.late:,.0f} late "
              f"changes; worker peak RSS {result.peak_rss_mib:.0f} MiB with its stage "
              f"processes, PSS {result.peak_pss_mib:.0f} MiB)")
    bare_after = bare_loop(base.kafka_bootstrap, raw, out, len(workload.bodies))
    print(f"bare loop again, after boxsync:             {bare_after:10,.0f} events/s")
    return (bare_before + bare_after) / 2, ingest_rates, runs


def run_order(rounds: int, with_filters: bool) -> list[bool]:
    """Filters off/on per round, alternating which goes first (off on on off ...), so that a
    machine that drifts faster or slower over the runs favours neither."""
    if not with_filters:
        return [False] * rounds
    return [filtered for n in range(rounds) for filtered in ((False, True), (True, False))[n % 2]]


def report(bare: float, ingest_rates: list[float], plain_runs: list[BoxsyncResult],
           filtered_runs: list[BoxsyncResult]) -> list[Row]:
    """Print the ratios and the filter cost (from the mean rates of each side); the rows for
    the summary table."""
    plain, rate = plain_runs[-1], _mean([r.rate for r in plain_runs])
    ratio, ingest_ratio = rate / bare, _mean(ingest_rates) / bare
    shared_ratio = _mean([r.ingest_rate for r in plain_runs]) / bare
    print(f"ratio boxsync / bare (mean of both bare runs), filters off: {ratio:.2f}  "
          f"(target ≥ {TARGET_RATIO:.2f}){_each(plain_runs)}")
    print(f"ratio ingest alone / bare (raw → sync.changes, a worker running only ingest): "
          f"{ingest_ratio:.2f}  (target ≥ {TARGET_INGEST_RATIO:.2f})")
    print(f"ratio ingest / bare inside the whole pipeline (sharing the 2 cores with the "
          f"collapse): {shared_ratio:.2f}")
    rows = [Row("bare loop (mean of before/after)", f"{bare:,.0f} events/s"),
            Row("boxsync end to end, filters off", f"{rate:,.0f} events/s{_each(plain_runs)}"),
            Row("ratio boxsync / bare, filters off", f"{ratio:.2f}", f"≥ {TARGET_RATIO:.2f}",
                verdict(ratio >= TARGET_RATIO)),
            Row("ingest alone (raw → sync.changes)", f"{_mean(ingest_rates):,.0f} events/s"),
            Row("ratio ingest alone / bare", f"{ingest_ratio:.2f}",
                f"≥ {TARGET_INGEST_RATIO:.2f}", verdict(ingest_ratio >= TARGET_INGEST_RATIO)),
            Row("ratio ingest / bare inside the pipeline", f"{shared_ratio:.2f}")]
    if not filtered_runs:
        return rows
    filtered, on_rate = filtered_runs[-1], _mean([r.rate for r in filtered_runs])
    on_ratio, cost = on_rate / bare, 1 - on_rate / rate
    reasons = {reason: count for reason, count in sorted(filtered.filtered.items()) if count}
    denied = reasons.get("permission_denied", 0)
    print(f"ratio boxsync / bare, filters on: {on_ratio:.2f}{_each(filtered_runs)}")
    print(f"updates emitted (last run of each): {filtered.updates:,} with filters, "
          f"{plain.updates:,} without")
    print("boxsync_updates_filtered_total, with filters: " + ", ".join(
        f"{reason} {count:,.0f}" for reason, count in reasons.items()))
    print("  (no_box and the first reason of an update that reached no box count updates not "
          "emitted; box_closed, box_archived... also count the boxes an emitted update "
          "skipped; permission_denied counts changes, dropped before their window)")
    print("boxsync_changes_closed_total, with filters: " + ", ".join(
        f"{outcome} {count:,.0f}" for outcome, count in sorted(filtered.closed.items())) +
          "  (filtered: changes in windows whose update reached no box)")
    print(f"filter cost 1 - (filters on / filters off): {cost:.1%}  (budget ≤ "
          f"{FILTER_BUDGET:.0%}): {verdict(cost <= FILTER_BUDGET)}")
    return [
        *rows,
        Row("boxsync end to end, filters on", f"{on_rate:,.0f} events/s{_each(filtered_runs)}"),
        Row("ratio boxsync / bare, filters on", f"{on_ratio:.2f}"),
        Row("filter cost 1 - on/off", f"{cost:.1%}", f"≤ {FILTER_BUDGET:.0%}",
            verdict(cost <= FILTER_BUDGET)),
        Row("updates emitted, filters on / off", f"{filtered.updates:,} / {plain.updates:,}"),
        Row("changes denied (permission_denied)", f"{denied:,.0f}"),
        Row("changes in updates that reached no box",
            f"{filtered.closed.get('filtered', 0):,.0f}")]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _each(results: list[BoxsyncResult]) -> str:
    """` (per run: 23,071, 26,810 events/s)` when there was more than one run."""
    if len(results) < 2:
        return ""
    return " (per run: " + ", ".join(f"{r.rate:,.0f}" for r in results) + " events/s)"


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
