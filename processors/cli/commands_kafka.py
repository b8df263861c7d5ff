"""`boxsync topics create`, `boxsync publish`, `boxsync consume`."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from tqdm import tqdm

from processors.cli.common import BoxsyncError, CliContext
from processors.runtime.kafka import client_config, consumer_config, produce, producer_config
from processors.runtime.preflight import kafka_metadata
from schemas.topics import ALL_TOPICS, TopicSpec, by_name

TOPIC_NAMES = [spec.name for spec in ALL_TOPICS]


@click.group()
def topics() -> None:
    """Manage boxsync's Kafka topics (names get BOXSYNC_TOPIC_PREFIX)."""


@topics.command("create")
@click.pass_obj
def topics_create(obj: CliContext) -> None:
    """Create every topic of the contract, idempotently.

    Partition counts come from BOXSYNC_PARTITIONS; cleanup policies and retention from the
    topic registry (schemas/topics.py). Existing topics are left as they are and reported.
    """
    settings = obj.settings
    metadata = kafka_metadata(settings)
    wanted = [spec for spec in ALL_TOPICS
              if spec.full_name(settings.topic_prefix) not in metadata.topics]
    for spec in ALL_TOPICS:
        name = spec.full_name(settings.topic_prefix)
        if name in metadata.topics:
            count = len(metadata.topics[name].partitions)
            click.echo(f"exists   {name} ({count} partitions)")
    if not wanted:
        return
    admin = AdminClient(client_config(settings))
    futures = admin.create_topics([_new_topic(spec, settings.topic_prefix, settings.partitions)
                                   for spec in wanted], operation_timeout=30)
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise BoxsyncError(f"could not create topic {name}: {exc.args[0].str()}") from None
        click.echo(f"created  {name} ({settings.partitions} partitions)")


def _new_topic(spec: TopicSpec, prefix: str, partitions: int) -> NewTopic:
    # replication_factor=-1: the broker's default, right for one local node and for a cluster.
    return NewTopic(spec.full_name(prefix), num_partitions=partitions, replication_factor=-1,
                    config=spec.config())


@click.command()
@click.option("--topic", "topic_name", required=True, type=click.Choice(TOPIC_NAMES),
              help="Topic to publish to (without the prefix), e.g. jira.events.")
@click.option("--key", default=None, help="Record key for every record (default: none).")
@click.option("--header", "headers", multiple=True, metavar="NAME=VALUE",
              help="A Kafka header for every record; repeatable.")
@click.option("--lines", is_flag=True,
              help="Each non-empty line of a file is one record (JSON Lines).")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.pass_obj
def publish(obj: CliContext, topic_name: str, key: str | None, headers: tuple[str, ...],
            lines: bool, paths: tuple[Path, ...]) -> None:
    """Publish raw files to a topic, byte for byte, as an upstream system would.

    \b
    Each file is one record; a folder publishes its files in name order.
    Examples:
      boxsync publish --topic jira.events deploy/demo/jira/*.json
      boxsync publish --topic jira.events --header x-jira-site=jira.example.com body.json
    """
    settings = obj.settings
    header_list = [_header(item) for item in headers]
    files = sorted(_expand(paths))
    if not files:
        raise BoxsyncError("no files to publish under the given paths")
    kafka_metadata(settings)
    producer = Producer(producer_config(settings))
    target = by_name(topic_name).full_name(settings.topic_prefix)
    failures: list[str] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    count = 0
    for value in tqdm(_records(files, lines), desc=f"publish {target}", unit="rec",
                      disable=not sys.stderr.isatty()):
        produce(producer, target, value, key, header_list, delivered)
        count += 1
    producer.flush(30)
    if failures:
        raise BoxsyncError(f"{len(failures)} of {count} records not delivered: {failures[0]}")
    click.echo(f"published {count} records to {target}")


@click.command()
@click.option("--topic", "topic_name", required=True, type=click.Choice(TOPIC_NAMES),
              help="Topic to read (without the prefix), e.g. task.updates.")
@click.option("--from-beginning/--from-end", default=True, show_default=True,
              help="Start at the oldest record, or only show new ones.")
@click.option("--max", "max_records", type=int, default=0, help="Stop after N records.")
@click.option("--idle", type=float, default=10.0, show_default=True,
              help="Stop after this many seconds without a record (0: never).")
@click.pass_obj
def consume(obj: CliContext, topic_name: str, from_beginning: bool, max_records: int,
            idle: float) -> None:
    """Print a topic's committed records as JSON lines (value only), e.g. the task updates."""
    settings = obj.settings
    metadata = kafka_metadata(settings)
    name = by_name(topic_name).full_name(settings.topic_prefix)
    if name not in metadata.topics:
        raise BoxsyncError(f"topic {name} does not exist; run `boxsync topics create`")
    consumer = Consumer(consumer_config(settings, "unused", **{"group.id": f"cli-{time.time()}"}))
    offset = -2 if from_beginning else -1  # OFFSET_BEGINNING / OFFSET_END
    consumer.assign([TopicPartition(name, p, offset) for p in metadata.topics[name].partitions])
    shown, last_seen = 0, time.monotonic()
    try:
        while not max_records or shown < max_records:
            message = consumer.poll(0.5)
            if message is None or message.error():
                if idle and time.monotonic() - last_seen > idle:
                    break
                continue
            last_seen = time.monotonic()
            click.echo((message.value() or b"null").decode("utf-8", "replace"))
            shown += 1
    finally:
        consumer.close()


def _expand(paths: tuple[Path, ...]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from (p for p in path.rglob("*") if p.is_file())
        else:
            yield path


def _records(files: list[Path], lines: bool) -> Iterator[bytes]:
    for path in files:
        data = path.read_bytes()
        if lines:
            yield from (line for line in data.splitlines() if line.strip())
        else:
            yield data


def _header(item: str) -> tuple[str, str | bytes | None]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise BoxsyncError(f"--header takes NAME=VALUE, got {item!r}")
    return name, value.encode()
