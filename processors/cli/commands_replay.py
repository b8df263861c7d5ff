"""`boxsync replay`: publish a topic's records again, for a time range, to it or another topic.

Replaying is safe by design: a change event keeps its event id, so a replayed upstream body
that boxsync already applied is recognized as a duplicate (within the dedupe retention), and
collapse update ids are deterministic. Replaying `sync.deadletter` sends each dead letter's
original bytes, key and headers back to the topic it came from (after the cause is fixed).
"""

from __future__ import annotations

import base64
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import click
import orjson
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from tqdm import tqdm

from processors.cli.common import BoxsyncError, CliContext
from processors.runtime.kafka import consumer_config, produce, producer_config
from processors.runtime.preflight import kafka_metadata
from processors.runtime.records import header_pairs
from processors.settings import Settings
from schemas.topics import ALL_TOPICS, SYNC_DEADLETTER, by_name

TOPIC_NAMES = [spec.name for spec in ALL_TOPICS]
REPLAYED_FROM = "x-boxsync-replayed-from"


@dataclass(frozen=True)
class Span:
    """Offsets [start, end) of one partition to replay."""

    partition: int
    start: int
    end: int


@click.command()
@click.option("--topic", "topic_name", required=True, type=click.Choice(TOPIC_NAMES),
              help="Topic to read (without the prefix).")
@click.option("--since", type=str, default=None,
              help="Oldest record time to replay, ISO-8601 (default: the topic's start).")
@click.option("--until", type=str, default=None,
              help="Newest record time, ISO-8601, exclusive (default: now).")
@click.option("--to-topic", "to_topic", type=click.Choice(TOPIC_NAMES), default=None,
              help="Where to publish (default: the same topic; for sync.deadletter, the "
                   "topic each dead letter came from).")
@click.option("--dry-run", is_flag=True, help="Count and show what would be replayed.")
@click.option("--rate", type=click.FloatRange(min=1), default=None,
              help="At most this many records per second (default: as fast as possible).")
@click.pass_obj
def replay(obj: CliContext, topic_name: str, since: str | None, until: str | None,
           to_topic: str | None, dry_run: bool, rate: float | None) -> None:
    """Publish a topic's records from a time range again.

    \b
    Examples:
      boxsync replay --topic sync.deadletter --since 2026-11-28T02:00Z --dry-run
      boxsync replay --topic sync.deadletter --since 2026-11-28T02:00Z
      boxsync replay --topic jira.events --since 2026-11-27T00:00Z --until 2026-11-28T00:00Z
      boxsync replay --topic jira.events --to-topic trello.events   (rarely what you want)
    \b
    Record times are the Kafka record timestamps. Each replayed record carries the header
    x-boxsync-replayed-from: <topic>:<partition>:<offset>. Replayed upstream bodies that were
    applied already count as duplicates; nothing is applied twice.
    """
    settings = obj.settings
    start_ms, end_ms = _time_range(since, until)
    source = by_name(topic_name).full_name(settings.topic_prefix)
    metadata = kafka_metadata(settings)
    if source not in metadata.topics:
        raise BoxsyncError(f"topic {source} does not exist; run `boxsync topics create`")
    target = by_name(to_topic).full_name(settings.topic_prefix) if to_topic else None
    consumer = Consumer(consumer_config(settings, "boxsync-replay",
                                        **{"enable.partition.eof": True}))
    try:
        spans = _spans(consumer, source, len(metadata.topics[source].partitions),
                       start_ms, end_ms)
        total = sum(span.end - span.start for span in spans)
        if total == 0:
            click.echo(f"nothing to replay on {source} between {_show(start_ms)} and "
                       f"{_show(end_ms)}")
            return
        copied, destinations = _copy(settings, consumer, source, spans, target, total,
                                     dry_run, rate)
    finally:
        consumer.close()
    where = ", ".join(f"{name} ({count})" for name, count in sorted(destinations.items()))
    verb = "would replay" if dry_run else "replayed"
    click.echo(f"{verb} {copied} records from {source} ({_show(start_ms)} to "
               f"{_show(end_ms)}) to {where or 'nowhere'}")


def _copy(settings: Settings, consumer: Consumer, source: str, spans: list[Span],
          target: str | None, total: int, dry_run: bool, rate: float | None
          ) -> tuple[int, dict[str, int]]:
    producer = None if dry_run else Producer(producer_config(settings))
    consumer.assign([TopicPartition(source, span.partition, span.start) for span in spans])
    ends = {span.partition: span.end for span in spans}
    destinations: dict[str, int] = {}
    copied, started = 0, time.monotonic()
    failures: list[str] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    with tqdm(total=total, desc=f"replay {source}", unit="rec",
              disable=not sys.stderr.isatty()) as progress:
        while ends:
            message = consumer.poll(1.0)
            if message is None:
                continue
            partition = message.partition() or 0
            if message.error() or partition not in ends:
                if message.error() and partition in ends:  # end of partition reached
                    del ends[partition]
                continue
            offset = message.offset() or 0
            if offset >= ends[partition]:
                del ends[partition]
                continue
            destination, key, value, headers = _republished(message, source, target,
                                                            settings.topic_prefix)
            destinations[destination] = destinations.get(destination, 0) + 1
            if producer is not None:
                produce(producer, destination, value, key, headers, delivered)
            copied += 1
            progress.update(1)
            if offset + 1 >= ends[partition]:
                del ends[partition]
            if rate:
                time.sleep(max(0.0, started + copied / rate - time.monotonic()))
    if producer is not None and (producer.flush(60) or failures):
        raise BoxsyncError(f"{len(failures) or 'some'} replayed records were not delivered"
                           f"{': ' + failures[0] if failures else ''}; run again (replay is "
                           "idempotent downstream)")
    return copied, destinations


def _republished(message: Message, source: str, target: str | None, prefix: str
                 ) -> tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """What to publish for one record: a dead letter's original, or the record as it is."""
    origin = f"{source}:{message.partition()}:{message.offset()}".encode()
    value = message.value()
    key = message.key()
    value_bytes = value.encode() if isinstance(value, str) else value
    key_bytes = key.encode() if isinstance(key, str) else key
    if source == SYNC_DEADLETTER.full_name(prefix) and value_bytes:
        letter = orjson.loads(value_bytes)
        original = base64.b64decode(letter["value"]) if letter.get("value") else None
        headers = [(name, (text or "").encode())
                   for name, text in (letter.get("headers") or {}).items()]
        original_key = letter["key"].encode() if letter.get("key") is not None else None
        return (target or letter["source_topic"], original_key, original,
                [*headers, (REPLAYED_FROM, origin)])
    headers = [(name, item or b"") for name, item in header_pairs(message)
               if name != REPLAYED_FROM]
    return target or source, key_bytes, value_bytes, [*headers, (REPLAYED_FROM, origin)]


def _spans(consumer: Consumer, topic: str, partitions: int, start_ms: int | None,
           end_ms: int) -> list[Span]:
    spans = []
    for partition in range(partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        start = _offset_at(consumer, topic, partition, start_ms, low, high)
        end = _offset_at(consumer, topic, partition, end_ms, low, high)
        if end > start:
            spans.append(Span(partition, start, end))
    return spans


def _offset_at(consumer: Consumer, topic: str, partition: int, at_ms: int | None, low: int,
               high: int) -> int:
    """The first offset whose record time is at or after `at_ms` (high when none is)."""
    if at_ms is None:
        return low
    found = consumer.offsets_for_times([TopicPartition(topic, partition, at_ms)], timeout=10)[0]
    return high if found.offset < 0 else max(low, found.offset)


def _time_range(since: str | None, until: str | None) -> tuple[int | None, int]:
    start = _parse_time("--since", since) if since else None
    end = _parse_time("--until", until) if until else int(time.time() * 1000)
    if start is not None and start >= end:
        raise BoxsyncError(f"--since ({since}) must be before --until ({until or 'now'})")
    return start, end


def _parse_time(option: str, text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BoxsyncError(f"{option} takes an ISO-8601 time such as 2026-11-28T02:00Z, "
                           f"got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # a time without a zone is taken as UTC
    return int(moment.timestamp() * 1000)


def _show(epoch_ms: int | None) -> str:
    if epoch_ms is None:
        return "the start"
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
