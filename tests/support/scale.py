"""A steady Jira load and the checks of the scale-out tests (test_scale_out.py)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from processors.settings import Settings
from tests.support import jira_bodies as jb
from tests.support.kafka import WorkerProcess

SITE = "scale.atlassian.net"


@dataclass
class SteadyLoad:
    """`rate` Jira issue updates a second over `tasks` issues (a change per task a second: two
    or more per 2 s window, so windows straddle each rebalance), each with its own delivery id
    (`d-<n>`), from a thread, until stopped."""

    settings: Settings
    tasks: int = 40
    rate: float = 40.0
    sent: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> SteadyLoad:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap,
                             "linger.ms": 5})
        topic = f"{self.settings.topic_prefix}jira.events"
        started, n = time.monotonic(), 0
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while n < due:
                task = n % self.tasks
                body = jb.updated(int(time.time() * 1000), jb.user("557058:alice", "Alice"),
                                  jb.issue(SITE, str(20_000 + task), f"SC-{task}",
                                           summary=f"change {n}"),
                                  1_000_000 + n, [jb.item("summary", f"change {n}")])
                delivery = f"d-{n}"
                producer.produce(topic, orjson.dumps(body), f"SC-{task}",
                                 headers=[("x-atlassian-webhook-identifier", delivery)])
                self.sent.append(delivery)
                n += 1
            producer.poll(0)
            self._stop.wait(0.05)
        assert producer.flush(30) == 0


def held_partitions(worker: WorkerProcess, stage: str) -> set[tuple[str, str]]:
    """The (topic, partition)s whose lag series a worker exports for `stage`: the ones its
    processes hold."""
    code, body = worker.http("/metrics")
    if code != 200:
        return set()
    return {(s.labels["topic"], s.labels["partition"])
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
            if s.name == "boxsync_consumer_lag_records" and s.labels.get("stage") == stage}


@dataclass(frozen=True)
class Outcome:
    lost: set[str]
    duplicate_update_ids: list[str]
    applied_twice: list[str]
    windows_split: list[tuple[str, str]]


def check(sent: list[str], updates: list[dict[str, Any]]) -> Outcome:
    """What went wrong, if anything: changes in no update, update ids seen twice, changes in
    two updates, and (task, window) pairs emitted more than once."""
    partial = [u for u in updates if u["sync_type"] == "partial"]
    ids = Counter(u["update_id"] for u in updates)
    events = Counter(e for u in partial for e in u["event_ids"])
    windows = Counter((u["task_id"], u["window_start"]) for u in partial)
    return Outcome(lost=set(sent) - set(events),
                   duplicate_update_ids=[i for i, n in ids.items() if n > 1],
                   applied_twice=[e for e, n in events.items() if n > 1],
                   windows_split=[w for w, n in windows.items() if n > 1])


def emit_delays(settings: Settings, timeout: float = 60.0) -> list[float]:
    """For each partial update on `task.updates`: seconds from its window's end to the
    record's broker timestamp (a rebalance that stops processing shows as a tail)."""
    topic = f"{settings.topic_prefix}task.updates"
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "isolation.level": "read_committed", "enable.partition.eof": True})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, -2) for p in partitions])
        pending, delays = set(partitions), []
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                continue
            update = orjson.loads(message.value() or b"{}")
            if update.get("sync_type") == "partial" and update.get("window_end"):
                end = datetime.fromisoformat(update["window_end"].replace("Z", "+00:00"))
                delays.append(message.timestamp()[1] / 1000 - end.timestamp())
        return sorted(delays)
    finally:
        consumer.close()


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")
