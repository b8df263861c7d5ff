"""Real-broker helpers for integration tests: topics, publishing, reading, a worker process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from processors.runtime.records import header_pairs
from processors.settings import Settings
from schemas.topics import ALL_TOPICS, by_name

ROOT = Path(__file__).resolve().parents[2]


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_topics(settings: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    futures = admin.create_topics([
        NewTopic(spec.full_name(settings.topic_prefix), settings.partitions, -1,
                 config=spec.config()) for spec in ALL_TOPICS])
    for future in futures.values():
        future.result()
    # CreateTopics returns once the controller has the topics; the broker's metadata, which
    # a CLI process asks next, may lag by a moment (a fresh clone once saw "does not exist").
    names = set(futures)
    deadline = time.monotonic() + 15
    while not names <= set(admin.list_topics(timeout=10).topics):
        if time.monotonic() > deadline:
            raise AssertionError(f"topics not in the broker's metadata after 15 s: "
                                 f"{sorted(names - set(admin.list_topics(timeout=10).topics))}")
        time.sleep(0.05)


def delete_topics(bootstrap: str, prefix: str) -> None:
    """Delete every topic named `prefix...` (a test's or a bench run's own) and wait for it.

    Each integration test makes a dozen topics; left behind, a few `make test` runs leave the
    local broker thousands of partitions whose metrics and state fill its heap (seen: 8,600
    partitions, the old generation 81 % full of live data), and its garbage collector then
    runs concurrent cycles all the time, taking CPU from whatever runs next."""
    if not prefix:
        raise ValueError("refusing to delete topics without a prefix: that would be all of them")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [name for name in admin.list_topics(timeout=10).topics if name.startswith(prefix)]
    if not names:
        return
    for future in admin.delete_topics(names, operation_timeout=30).values():
        # wait: librdkafka threads must not outlive the interpreter
        future.result()


def recreate_topics(settings: Settings, *topic_names: str, timeout: float = 60) -> None:
    """Delete topics (registry names) of the settings' tenant and create them again, empty,
    as an operator would: the broker gives each a new id (a new incarnation)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    specs = [by_name(name) for name in topic_names]
    names = [spec.full_name(settings.topic_prefix) for spec in specs]
    for future in admin.delete_topics(names, operation_timeout=30).values():
        future.result()
    deadline = time.monotonic() + timeout
    pending = dict(zip(names, specs, strict=True))
    while pending:
        futures = admin.create_topics([NewTopic(name, settings.partitions, -1,
                                                config=spec.config())
                                       for name, spec in pending.items()])
        for name, future in futures.items():
            try:
                future.result()
                del pending[name]
            except KafkaException:  # still being deleted: try again
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.3)
    while not set(names) <= set(admin.list_topics(timeout=10).topics):
        if time.monotonic() > deadline:
            raise AssertionError(f"re-created topics not in the metadata: {names}")
        time.sleep(0.1)


def publish(settings: Settings, topic_name: str, bodies: Iterable[bytes | dict[str, Any]],
            headers: Sequence[tuple[str, str | bytes | None]] | None = None) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    topic = by_name(topic_name).full_name(settings.topic_prefix)
    for body in bodies:
        value = body if isinstance(body, bytes) else orjson.dumps(body)
        producer.produce(topic, value=value, headers=list(headers) if headers else None)
    assert producer.flush(30) == 0


def publish_keyed(settings: Settings, topic_name: str,
                  records: Iterable[tuple[str, dict[str, Any] | None]]) -> None:
    """Keyed JSON records (None: a tombstone), e.g. on the compacted reference topics."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap,
                         "partitioner": "murmur2_random"})
    topic = by_name(topic_name).full_name(settings.topic_prefix)
    for key, value in records:
        producer.produce(topic, key=key, value=None if value is None else orjson.dumps(value))
    assert producer.flush(30) == 0


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


def read_records(settings: Settings, topic_name: str, *, expect: int = 0,
                 timeout: float = 30.0, settle: float = 0.0) -> list[Record]:
    """Committed raw records of a topic from the start: wait until `expect` are there, then
    `settle` seconds more (to catch one that must not come)."""
    topic = by_name(topic_name).full_name(settings.topic_prefix)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    metadata = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, -2) for p in metadata.topics[topic].partitions])
    found: list[Record] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            if settle_until is None and len(found) >= expect:
                settle_until = time.monotonic() + settle
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            headers = {name: value for name, value in header_pairs(message) if value is not None}
            key = message.key()
            found.append(Record(key.encode() if isinstance(key, str) else key,
                                message.value() or b"", headers))
    finally:
        consumer.close()
    return found


def read_to_end(settings: Settings, topic_name: str, timeout: float = 20.0
                ) -> list[dict[str, Any]]:
    """Every committed JSON record of a topic up to its end as of the call, in partition order
    (a poll for something that must already be there, without guessing a settle time)."""
    topic = by_name(topic_name).full_name(settings.topic_prefix)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "isolation.level": "read_committed", "enable.partition.eof": True})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, -2) for p in pending])
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error() is None:
                found.append(orjson.loads(message.value() or b"{}"))
            position = consumer.position([TopicPartition(topic, message.partition() or 0)])[0]
            if position.offset >= ends[message.partition() or 0]:
                pending.discard(message.partition() or 0)
        return found
    finally:
        consumer.close()


def read_topic(settings: Settings, topic_name: str, *, expect: int = 0,
               timeout: float = 30.0, settle: float = 0.0) -> list[dict[str, Any]]:
    """Committed JSON records of a topic from the start (see read_records)."""
    return [orjson.loads(record.value) for record in
            read_records(settings, topic_name, expect=expect, timeout=timeout, settle=settle)]


class WorkerProcess:
    """`boxsync worker` as a user runs it, in its own process."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return int(self.env["BOXSYNC_WEB_PORT"])

    def start(self, ready_timeout: float = 90) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "processors.cli.main", "worker"], cwd=ROOT,
            env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited {self.process.returncode}; "
                                     f"log: {self.log_path.read_text()[-3000:]}")
            if self.http("/readyz")[0] == 200:
                return self
            time.sleep(0.3)
        raise AssertionError(f"worker not ready; log: {self.log_path.read_text()[-3000:]}")

    def http(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=3) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


def daytime_zone(now: datetime | None = None) -> str:
    """A fixed-offset zone where it is about 11:00 now.

    Every test's tenant (its topic prefix) is new, so between 20:00 and 03:00 in the tenant's
    zone its nightly incremental sync is due the moment a worker starts; that surprise run
    took the requests a test had scripted for its own sync. Nine hours of daytime leave no
    night due during a test session (tests of the schedule give it their zone and clock)."""
    hour = (now or datetime.now(UTC)).hour
    offset = 11 - hour  # -12 ... +11
    if offset == 0:
        return "Etc/GMT"
    # The Etc zones' signs are POSIX's: Etc/GMT-5 is UTC+5.
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {
        "BOXSYNC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "BOXSYNC_TOPIC_PREFIX": settings.topic_prefix,
        "BOXSYNC_PARTITIONS": str(settings.partitions),
        "BOXSYNC_COLLAPSE_INTERVAL_SECONDS": str(settings.collapse_interval_seconds),
        "BOXSYNC_GRACE_SECONDS": str(settings.grace_seconds),
        "BOXSYNC_WEB_PORT": str(free_port()),
        "BOXSYNC_INSTANCE_ID": settings.topic_prefix.rstrip("."),
        "BOXSYNC_LOCAL_DIR": str(settings.local_dir),
        "BOXSYNC_LOG_FORMAT": "json",
        "BOXSYNC_FILTERS_ENABLED": str(settings.filters_enabled).lower(),
        "BOXSYNC_TENANT_TIMEZONE": daytime_zone(),
    }
    if settings.database_url is not None:
        env["BOXSYNC_DATABASE_URL"] = settings.database_url.get_secret_value()
    if settings.database_schema is not None:
        env["BOXSYNC_DATABASE_SCHEMA"] = settings.database_schema
    env.update(extra)
    return env
