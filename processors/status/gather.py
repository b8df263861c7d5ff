"""`boxsync status`, the reading part: committed offsets and watermarks from Kafka, the last
hour of `sync.deadletter` and the newest record of `task.updates`, box states and open runs
from PostgreSQL, and the stages' records per second from the workers' /metrics.

Everything is read, nothing written: no consumer joins a group (committed offsets are
fetched with the group's id, partitions are assigned, not subscribed).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import orjson
import psycopg
from confluent_kafka import OFFSET_END, Consumer, KafkaError, Message, TopicPartition

from processors.runtime.kafka import consumer_config, group_id, topic
from processors.runtime.records import header_pairs
from processors.settings import Settings
from processors.status.logic import (
    STAGE_INPUTS,
    LastUpdate,
    PartitionStatus,
    StageStatus,
    StatusReport,
    add_rates,
    partition_lag,
    rates_from_metrics,
)
from processors.store import db, runs
from schemas.topics import SYNC_DEADLETTER, TASK_UPDATES

TIMEOUT = 10.0
# At most this many dead letters are read for the last hour's counts (then they say "at least").
DEAD_LETTER_READ_LIMIT = 200_000
OPEN_RUN_STATES = ("pending", "queued", "running")


def gather(settings: Settings, database_url: str, metrics_urls: Sequence[str]) -> StatusReport:
    pages, workers = _worker_rates(metrics_urls)
    rates = add_rates(pages) if pages else None
    reader = Consumer(consumer_config(settings, f"boxsync-status-{uuid.uuid4().hex[:8]}",
                                      **{"enable.partition.eof": True}))
    try:
        stages = [_stage(settings, reader, name, rates) for name in STAGE_INPUTS]
        dead = _dead_letters(reader, topic(settings, SYNC_DEADLETTER), time.time() - 3600)
        last = _last_update(reader, topic(settings, TASK_UPDATES))
    finally:
        reader.close()
    boxes, open_runs = _database(database_url)
    return StatusReport(datetime.now(UTC), stages, dead, boxes, last, open_runs, workers)


def _partitions(reader: Consumer, name: str) -> list[TopicPartition]:
    metadata = reader.list_topics(name, timeout=TIMEOUT).topics.get(name)
    if metadata is None or metadata.error is not None:
        return []
    return [TopicPartition(name, number) for number in sorted(metadata.partitions)]


def _stage(settings: Settings, reader: Consumer, name: str,
           rates: dict[str, float] | None) -> StageStatus:
    group = group_id(settings, name)
    partitions = [tp for spec in STAGE_INPUTS[name]
                  for tp in _partitions(reader, topic(settings, spec))]
    committed = _committed(settings, group, partitions)
    rows = []
    for tp in partitions:
        low, high = reader.get_watermark_offsets(tp, timeout=TIMEOUT)
        offset = committed.get((tp.topic, tp.partition))
        rows.append(PartitionStatus(tp.topic, tp.partition, offset, high,
                                    partition_lag(offset, low, high)))
    rate = None if rates is None else round(rates.get(name, 0.0), 3)
    return StageStatus(name, group, rows, rate)


def _committed(settings: Settings, group: str, partitions: list[TopicPartition]
               ) -> dict[tuple[str, int], int | None]:
    if not partitions:
        return {}
    # A consumer with the stage's group id only fetches its offsets: it never subscribes.
    consumer = Consumer(consumer_config(settings, group))
    try:
        found = consumer.committed(partitions, timeout=TIMEOUT)
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): tp.offset if tp.offset >= 0 else None for tp in found}


def _dead_letters(reader: Consumer, name: str, since: float) -> dict[str, int]:
    partitions = _partitions(reader, name)
    if not partitions:
        return {}
    starts = reader.offsets_for_times(
        [TopicPartition(tp.topic, tp.partition, int(since * 1000)) for tp in partitions],
        timeout=TIMEOUT)
    pending = [tp for tp in starts if tp.offset >= 0 and tp.offset != OFFSET_END]
    counts: dict[str, int] = {}
    for read, message in enumerate(_read_to_end(reader, pending), start=1):
        reason = _reason(header_pairs(message), message.value())
        counts[reason] = counts.get(reason, 0) + 1
        if read >= DEAD_LETTER_READ_LIMIT:
            counts["(read limit reached: at least)"] = read
            break
    return counts


def _reason(headers: list[tuple[str, bytes | None]], value: bytes | None) -> str:
    for key, header in headers:
        if key == "x-boxsync-error" and header is not None:
            return header.decode("utf-8", "replace")
    try:
        error = orjson.loads(value or b"{}").get("error") or {}
        return str(error.get("type") or "unknown")
    except (orjson.JSONDecodeError, AttributeError):
        return "unknown"


def _last_update(reader: Consumer, name: str) -> LastUpdate | None:
    starts = []
    for tp in _partitions(reader, name):
        low, high = reader.get_watermark_offsets(tp, timeout=TIMEOUT)
        if high > low:  # a few back: the last offsets of a transactional topic are markers
            starts.append(TopicPartition(tp.topic, tp.partition, max(low, high - 4)))
    newest = None
    for message in _read_to_end(reader, starts):
        stamp = message.timestamp()[1]
        if newest is None or stamp >= newest.timestamp()[1]:
            newest = message
    if newest is None:
        return None
    try:
        value = orjson.loads(newest.value() or b"{}")
    except orjson.JSONDecodeError:
        value = {}
    return LastUpdate(str(value.get("task_id", "?")), str(value.get("update_id", "?")),
                      str(value.get("sync_type", "?")), str(value.get("op", "?")),
                      datetime.fromtimestamp(newest.timestamp()[1] / 1000, UTC),
                      newest.topic() or name, newest.partition() or 0, newest.offset() or 0)


def _read_to_end(reader: Consumer, starts: list[TopicPartition]) -> Iterator[Message]:
    """Every committed record from `starts` to each partition's end (partition EOF)."""
    if not starts:
        return
    reader.assign(starts)
    open_partitions = {(tp.topic, tp.partition) for tp in starts}
    deadline = time.monotonic() + 60
    try:
        while open_partitions and time.monotonic() < deadline:
            for message in reader.consume(1000, 1.0):
                error = message.error()
                if error is None:
                    yield message
                elif error.code() == KafkaError._PARTITION_EOF:
                    open_partitions.discard((message.topic(), message.partition()))
    finally:
        reader.unassign()


def _database(database_url: str) -> tuple[dict[str, int], dict[str, int]]:
    try:
        with db.connect(database_url, autocommit=True, timeout=TIMEOUT) as conn:
            boxes = runs.boxes_by_sync_state(conn)
            rows = conn.execute("SELECT state, count(*) FROM sync_runs WHERE state = ANY(%s) "
                                "GROUP BY state", (list(OPEN_RUN_STATES),)).fetchall()
    except psycopg.errors.UndefinedTable:
        return {}, {}
    open_runs = dict.fromkeys(OPEN_RUN_STATES, 0)
    open_runs.update({state: count for state, count in rows})
    return boxes, open_runs


def _worker_rates(urls: Sequence[str]) -> tuple[list[dict[str, float]], dict[str, str]]:
    pages, outcomes = [], {}
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                pages.append(rates_from_metrics(response.read().decode()))
            outcomes[url] = "ok"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            outcomes[url] = f"unreachable ({getattr(exc, 'reason', exc)})"
    return pages, outcomes
