"""The battery's view of Kafka: whole topics read to their end, counts, consumer lag, and
deleting a part's topics."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from processors.settings import Settings
from schemas.topics import by_name


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp_ms: int


def read_topic(settings: Settings, topic_name: str, *, keep: bool = True,
               timeout: float = 180) -> list[Record]:
    """Every committed record of a topic (read_committed) from its start to its end as of
    the call. With keep=False the records are counted only (an empty list of that length is
    not built: see count_topic)."""
    found: list[Record] = []
    _scan(settings, topic_name, timeout, found.append if keep else None)
    return found


def count_topic(settings: Settings, topic_name: str, timeout: float = 180) -> int:
    return _scan(settings, topic_name, timeout, None)


def _scan(settings: Settings, topic_name: str, timeout: float,
          sink: Callable[[Record], object] | None) -> int:
    name = by_name(topic_name).full_name(settings.topic_prefix)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 2,
                         "group.id": f"chaos-read-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "queued.max.messages.kbytes": 65536})
    seen = 0
    try:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
                for p in partitions}
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(name, p, -2) for p in pending])
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(10000, 0.5):
                if message.error() is not None:
                    continue
                seen += 1
                if sink is not None:
                    key = message.key()
                    sink(Record(key.encode() if isinstance(key, str) else key,
                                message.value(), _headers(message),
                                message.timestamp()[1]))
            if pending:
                positions = consumer.position([TopicPartition(name, p) for p in pending])
                for tp in positions:
                    if tp.offset >= ends[tp.partition]:
                        pending.discard(tp.partition)
        if pending:
            raise RuntimeError(f"{name}: not read to its end in {timeout:.0f} s")
        return seen
    finally:
        consumer.close()


def _headers(message: Any) -> list[tuple[str, bytes | None]]:
    return list(message.headers() or [])


def json_values(records: Iterable[Record]) -> list[dict[str, Any]]:
    return [orjson.loads(record.value) for record in records if record.value is not None]


def group_lag(settings: Settings, stage: str, topic_names: Iterable[str],
              exact: bool = False) -> int:
    """Records of the stage's input topics beyond its group's committed offsets (an
    uncommitted partition counts from its start). The offsets of a transactional topic
    include commit markers and aborted records that no reader ever gets: `exact` reads what
    lies beyond each committed offset (read_committed) and counts only real records."""
    group = f"{settings.topic_prefix}boxsync-{stage}"
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 2,
                         "group.id": group,
                         "enable.auto.commit": False})
    try:
        behind: list[tuple[TopicPartition, int]] = []
        for topic_name in topic_names:
            name = by_name(topic_name).full_name(settings.topic_prefix)
            partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
            committed = consumer.committed([TopicPartition(name, p) for p in partitions],
                                           timeout=10)
            for tp in committed:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(name, tp.partition), timeout=10)
                start = tp.offset if tp.offset >= 0 else low
                if high > start:
                    behind.append((TopicPartition(name, tp.partition, start), high))
    finally:
        consumer.close()
    if not exact:
        return sum(high - tp.offset for tp, high in behind)
    # A partition far behind is behind whatever its markers: no need to read it.
    return sum(_records_between(settings, tp, high) if high - tp.offset <= 1000
               else high - tp.offset for tp, high in behind)


def _records_between(settings: Settings, start: TopicPartition, high: int) -> int:
    reader = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 2,
                       "group.id": f"chaos-lag-{uuid.uuid4().hex}", "enable.auto.commit": False,
                       "isolation.level": "read_committed"})
    try:
        reader.assign([start])
        seen, deadline = 0, time.monotonic() + 20
        while time.monotonic() < deadline:
            seen += sum(1 for m in reader.consume(1000, 0.3) if m.error() is None)
            position = reader.position([TopicPartition(start.topic, start.partition)])[0]
            if position.offset >= high:
                break
        return seen
    finally:
        reader.close()


def pipeline_lag(settings: Settings, exact: bool = False) -> int:
    with contextlib.suppress(KafkaException):
        return (group_lag(settings, "ingest", ("jira.events", "trello.events"), exact)
                + group_lag(settings, "collapse", ("sync.changes",), exact))
    return -1


def delete_topics(settings: Settings) -> None:
    prefix = settings.topic_prefix
    if not prefix:
        return
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    names = [n for n in admin.list_topics(timeout=10).topics if n.startswith(prefix)]
    for future in admin.delete_topics(names, operation_timeout=30).values() if names else ():
        with contextlib.suppress(Exception):
            future.result()
