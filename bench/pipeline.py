"""`make bench`: boxsync's hot path against a bare confluent-kafka loop, side by side.

Workload (issue 2): 200,000 `jira:issue_updated` bodies of about 600 bytes over 20,000 issues,
source times spread over 100 seconds. Both contenders read the same bytes from the same local
broker in the same run:

- baseline: one consume(batch) → orjson.loads → produce loop, one hop, no state, no commit;
- boxsync: a real `boxsync worker` process: ingest (normalize, re-key, transactional produce to
  sync.changes) and collapse (windows, PostgreSQL cache writes, transactional produce to
  task.updates), from the first change it writes to the update that completes the workload.

The clock for boxsync is the records' own CreateTimes (first record on sync.changes, the update
that brings the collapsed count to the workload size), so worker start-up does not count. A
few sentinel events far ahead in source time close the last windows at once, as live traffic
would, instead of waiting interval + grace of wall time.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from processors.runtime.kafka import group_id
from processors.settings import Settings, load_settings
from schemas.topics import JIRA_EVENTS, SYNC_CHANGES, TASK_UPDATES
from tests.support.kafka import WorkerProcess, create_topics, free_port, worker_env

ROOT = Path(__file__).resolve().parents[1]
SITE = "bench.atlassian.net"
SENTINEL_BASE_ID = 9_000_000


@dataclass(frozen=True)
class Workload:
    bodies: list[tuple[bytes, bytes]]  # (key, value)
    sentinels: list[tuple[bytes, bytes]]
    events: int
    mean_bytes: float


def make_workload(events: int, issues: int, spread_seconds: float, seed: int = 7,
                  site: str = SITE) -> Workload:
    """Bodies sorted by source time, as a live Jira site emits them; about 600 bytes each."""
    rng = random.Random(seed)
    start_ms = int((time.time() - 3600) // 10 * 10 * 1000)
    users = [{"accountId": f"557058:{i:08x}-aaaa-bbbb-cccc-{i:012x}", "displayName": f"User {i}",
              "active": True, "accountType": "atlassian"} for i in range(50)]
    # Each issue is busy for a short stretch: about two windows of events per issue.
    busy = {i: start_ms + int(rng.uniform(0, spread_seconds - 8) * 1000) for i in range(issues)}
    raw = []
    for n in range(events):
        issue_id = rng.randrange(issues)
        timestamp = busy[issue_id] + rng.randrange(0, 8000)
        raw.append((timestamp, issue_id, n))
    raw.sort()
    bodies = [(f"BEN-{issue_id}".encode(), _body(ts, issue_id, n, rng.choice(users), site))
              for ts, issue_id, n in raw]
    last = raw[-1][0]
    # Later traffic, far ahead: closes every partition's last windows at once.
    sentinels = [(f"BEN-S{i}".encode(),
                  _body(last + 1_000_000, SENTINEL_BASE_ID + i, events + i, users[0], site))
                 for i in range(64)]
    mean = sum(len(v) for _, v in bodies) / events
    return Workload(bodies, sentinels, events, mean)


def _body(timestamp: int, issue_id: int, changelog_id: int, user: dict[str, object],
          site: str = SITE) -> bytes:
    return orjson.dumps({
        "timestamp": timestamp, "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_updated", "user": user,
        "issue": {"id": str(10000 + issue_id), "self": f"https://{site}/rest/api/2/issue/"
                  f"{10000 + issue_id}", "key": f"BEN-{issue_id}", "fields": {
                      "summary": f"Issue {issue_id} rev {changelog_id}",
                      "status": {"name": "In Progress", "id": "3",
                                 "statusCategory": {"id": 4, "key": "indeterminate"}},
                      "project": {"key": "BEN"}}},
        "changelog": {"id": str(100000 + changelog_id), "items": [
            {"field": "summary", "fieldtype": "jira", "fieldId": "summary", "from": None,
             "fromString": "old", "to": None, "toString": f"rev {changelog_id}"}]},
    })


def load(bootstrap: str, topic: str, bodies: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "batch.num.messages": 10000, "queue.buffering.max.messages": 500000,
                         "partitioner": "murmur2_random"})
    for key, value in bodies:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
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


def boxsync_run(settings: Settings, workload: Workload, log: Path
                ) -> tuple[float, float, float, int]:
    """(events/s end to end, ingest events/s, peak worker RSS MiB, updates) of a real worker
    over the workload."""
    create_topics(settings)
    raw_topic = JIRA_EVENTS.full_name(settings.topic_prefix)
    load(settings.kafka_bootstrap, raw_topic, workload.bodies)
    worker = WorkerProcess(worker_env(settings, BOXSYNC_WEB_PORT=str(free_port()),
                                      BOXSYNC_INGEST_PROCESSES=str(settings.ingest_processes),
                                      BOXSYNC_COLLAPSE_PROCESSES=str(
                                          settings.collapse_processes),
                                      BOXSYNC_LOG_LEVEL="WARNING"), log)
    peak_rss = 0.0
    broker = broker_process()
    broker_cpu = _cpu(broker)
    try:
        worker.start()
        assert worker.process is not None
        proc = psutil.Process(worker.process.pid)
        updates, last_ms = 0, 0
        consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                             "group.id": f"bench-{uuid.uuid4()}", "auto.offset.reset": "earliest",
                             "isolation.level": "read_committed"})
        consumer.subscribe([TASK_UPDATES.full_name(settings.topic_prefix)])
        deadline = time.monotonic() + 600
        closed, drained_at, sent_sentinels = 0.0, None, False
        watch = IngestWatch(settings, raw_topic)
        while time.monotonic() < deadline:
            if not sent_sentinels and watch.done():
                # Published once ingest has committed the workload: re-keying reads the raw
                # partitions unevenly, and stream time that ran ahead would make events late.
                load(settings.kafka_bootstrap, raw_topic, workload.sentinels)
                sent_sentinels = True
            family = [proc, *proc.children(recursive=True)]
            peak_rss = max(peak_rss, sum(p.memory_info().rss for p in family) / 2**20)
            messages = consumer.consume(5000, 0.05)
            for message in messages:
                if message.error():
                    continue
                update = orjson.loads(message.value() or b"{}")
                if int(update["task_id"].rsplit(":", 1)[1]) >= SENTINEL_BASE_ID:
                    continue
                updates += 1
                last_ms = max(last_ms, message.timestamp()[1])
            if drained_at is None:
                closed = changes_closed(worker)
                if closed >= workload.events:
                    drained_at = time.monotonic()  # every change is in a closed window
            elif not messages and time.monotonic() - drained_at > 2:
                break
        consumer.close()
        watch.close()
        if drained_at is None:
            raise SystemExit(f"boxsync did not finish: {closed:.0f} of {workload.events} events")
        cpu = {"broker": _cpu(broker) - broker_cpu, "worker (faust, web)": _cpu(proc)}
        for child in proc.children():
            cpu[child.name()] = _cpu(child)  # stage processes are named bs-<stage>
        print("  CPU seconds over the run: " + ", ".join(
            f"{name} {seconds:.1f}" for name, seconds in cpu.items()))
        first_ms, last_change_ms = record_span_ms(settings,
                                                  SYNC_CHANGES.full_name(settings.topic_prefix))
        ingest_rate = workload.events / max(0.001, (last_change_ms - first_ms) / 1000)
        print(f"  of which ingest alone (first to last record on sync.changes): "
              f"{ingest_rate:,.0f} events/s; collapse finished "
              f"{(last_ms - last_change_ms) / 1000:.2f} s after ingest")
        return workload.events / ((last_ms - first_ms) / 1000), ingest_rate, peak_rss, updates
    finally:
        worker.stop()


def broker_process() -> psutil.Process | None:
    for process in psutil.process_iter(["cmdline"]):
        if "kafka.Kafka" in (process.info["cmdline"] or []):
            return process
    return None


def _cpu(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return float(times.user + times.system)


class IngestWatch:
    """Tells, cheaply and repeatedly, whether the ingest stage committed all of a raw topic."""

    def __init__(self, settings: Settings, raw_topic: str) -> None:
        self._consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                                   "group.id": group_id(settings, "ingest")})
        partitions = self._consumer.list_topics(raw_topic, timeout=10).topics[raw_topic]
        self._partitions = [TopicPartition(raw_topic, p) for p in partitions.partitions]
        self._ends = [self._consumer.get_watermark_offsets(tp, timeout=10)[1]
                      for tp in self._partitions]

    def done(self) -> bool:
        committed = self._consumer.committed(self._partitions, timeout=10)
        return all(tp.offset >= end for tp, end in zip(committed, self._ends, strict=True))

    def close(self) -> None:
        self._consumer.close()


def changes_closed(worker: WorkerProcess) -> float:
    """Change events the worker has closed windows on (emitted or dropped), from /metrics."""
    _, body = worker.http("/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
               if line.startswith("boxsync_changes_closed_total{"))


def record_span_ms(settings: Settings, topic: str) -> tuple[int, int]:
    """CreateTime of the first and of the last record of a topic (over its partitions)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"bench-{uuid.uuid4()}", "isolation.level": "read_committed"})
    metadata = consumer.list_topics(topic, timeout=10)
    first, last = [], []
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--issues", type=int, default=20_000)
    parser.add_argument("--spread", type=float, default=100.0)
    args = parser.parse_args()
    base = load_settings()
    if not base.local_dir.is_absolute():
        base = base.model_copy(update={"local_dir": ROOT / base.local_dir})
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    settings = base.model_copy(update={"topic_prefix": prefix})
    # A site of its own: every run starts with new tasks, so runs compare.
    workload = make_workload(args.events, args.issues, args.spread,
                             site=f"{prefix.rstrip('.')}.atlassian.net")
    print(f"workload: {workload.events} jira:issue_updated bodies, {args.issues} issues, "
          f"mean {workload.mean_bytes:.0f} bytes, source times over {args.spread:.0f} s; "
          f"{settings.partitions} partitions; {os.cpu_count()} cores")

    admin = AdminClient({"bootstrap.servers": base.kafka_bootstrap})
    raw, out = f"{prefix}bare.in", f"{prefix}bare.out"
    for future in admin.create_topics([NewTopic(t, settings.partitions, -1)
                                       for t in (raw, out, f"{prefix}warm")]).values():
        future.result()
    load(base.kafka_bootstrap, raw, workload.bodies)
    # The broker's JIT warms up over the first runs; warm it before measuring anything, and
    # measure the bare loop before and after boxsync, so neither side gets a warmer broker.
    bare_loop(base.kafka_bootstrap, raw, f"{prefix}warm", len(workload.bodies))
    bare_before = bare_loop(base.kafka_bootstrap, raw, out, len(workload.bodies))
    print(f"bare confluent-kafka consume→parse→produce:  {bare_before:10,.0f} events/s")

    log = ROOT / ".local" / "bench-worker.log"
    rate, ingest_rate, rss, updates = boxsync_run(settings, workload, log)
    print(f"boxsync jira.events → task.updates:        {rate:10,.0f} events/s "
          f"({updates:,} updates, {workload.events / updates:.1f} events each; "
          f"worker peak RSS {rss:.0f} MiB with its stage processes)")
    bare_after = bare_loop(base.kafka_bootstrap, raw, out, len(workload.bodies))
    print(f"bare loop again, after boxsync:             {bare_after:10,.0f} events/s")
    bare = (bare_before + bare_after) / 2
    print(f"ratio boxsync / bare (mean of both bare runs): {rate / bare:.2f}  (target ≥ 0.30)")
    print(f"ratio ingest alone / bare (raw → sync.changes): {ingest_rate / bare:.2f}  "
          "(target ≥ 0.50)")
    cleanup = admin.delete_topics([t for t in admin.list_topics(timeout=10).topics
                                   if t.startswith(prefix)], operation_timeout=30)
    for future in cleanup.values():  # wait: librdkafka threads must not outlive the interpreter
        future.result()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
