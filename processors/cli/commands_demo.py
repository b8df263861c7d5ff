"""`boxsync demo`: publish the sample Jira bodies and show what comes out.

The bodies in deploy/demo/jira are real-shaped webhook bodies with fixed times; the demo moves
their times to just before now (by whole windows, so they keep their window layout), so every
run makes fresh windows, and prints the task updates and dead letters the worker produces.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any

import click
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from processors.cli.common import BoxsyncError, CliContext
from processors.runtime.kafka import consumer_config, produce, producer_config
from processors.runtime.preflight import kafka_metadata
from processors.settings import Settings
from schemas.topics import (
    BOX_DEFINITIONS,
    JIRA_EVENTS,
    JIRA_PERMISSIONS,
    SYNC_DEADLETTER,
    TASK_UPDATES,
    by_name,
)

DEMO_DIR = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "jira"
REFERENCE_FILE = DEMO_DIR.parent / "reference.json"
# The collapse reads new reference records once per loop turn; give it a moment.
REFERENCE_SETTLE_SECONDS = 1.5
_TIMESTAMP = re.compile(rb'"timestamp":\s*(\d+)')


@click.command()
@click.option("--bodies", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=DEMO_DIR, show_default=True, help="Folder of Jira webhook bodies.")
@click.option("--timeout", type=float, default=45.0, show_default=True,
              help="Seconds to wait for the updates.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole messages as JSON.")
@click.pass_obj
def demo(obj: CliContext, bodies: Path, timeout: float, as_json: bool) -> None:
    """Feed sample Jira events to a running worker and print the task updates.

    Needs the stack, the topics and a worker (`make run` starts them all). First the
    reference data of deploy/demo/reference.json: a box whose scope is project OPS, an
    archived one (it takes no update), and the demo users' permissions on OPS. Then the
    samples: one issue changed by three people and an automation within one window, one issue
    created and deleted, and one body that is not JSON (it becomes a dead letter).
    """
    settings = obj.settings
    kafka_metadata(settings)
    files = sorted(bodies.glob("*.json"))
    if not files:
        raise BoxsyncError(f"no *.json bodies in {bodies}")
    updates_topic = TASK_UPDATES.full_name(settings.topic_prefix)
    dead_topic = SYNC_DEADLETTER.full_name(settings.topic_prefix)
    start = _end_offsets(settings, [updates_topic, dead_topic])
    counts = _publish_reference(settings, REFERENCE_FILE)
    click.echo(f"published {counts.get(BOX_DEFINITIONS.name, 0)} boxes and "
               f"{counts.get(JIRA_PERMISSIONS.name, 0)} permission grants "
               f"({REFERENCE_FILE.name})")
    time.sleep(REFERENCE_SETTLE_SECONDS)
    values = _restamp([path.read_bytes() for path in files], settings.collapse_interval_seconds)
    _publish(settings, values)
    valid = sum(1 for value in values if _is_json(value))
    click.echo(f"published {len(values)} Jira bodies to "
               f"{JIRA_EVENTS.full_name(settings.topic_prefix)} ({len(values) - valid} broken)")
    click.echo(f"waiting for task updates (window {settings.collapse_interval_seconds} s "
               f"+ grace {settings.grace_seconds:g} s) ...")
    updates, letters = _collect(settings, start, updates_topic, len(values) - valid, timeout)
    _show(updates, letters, as_json)
    if not updates:
        raise BoxsyncError("no task update arrived; is the worker running? "
                           "(see .local/worker.log, or run `boxsync worker`)")


def _restamp(values: list[bytes], interval: int) -> list[bytes]:
    """Shift every `timestamp` by whole windows so the earliest lands a minute before now."""
    stamps = [int(m.group(1)) for v in values for m in [_TIMESTAMP.search(v)] if m]
    if not stamps:
        return values
    step = interval * 1000
    target = math.floor((time.time() * 1000 - 60_000) / step) * step
    shift = (target - math.floor(min(stamps) / step) * step)

    def moved(value: bytes) -> bytes:
        return _TIMESTAMP.sub(lambda m: b'"timestamp": ' + str(int(m.group(1)) + shift).encode(),
                              value, count=1)

    return [moved(value) for value in values]


def _publish(settings: Settings, values: list[bytes]) -> None:
    producer = Producer(producer_config(settings))
    topic = JIRA_EVENTS.full_name(settings.topic_prefix)
    for value in values:
        produce(producer, topic, value)
    if producer.flush(30):
        raise BoxsyncError(f"could not deliver the demo bodies to {topic}")


def _publish_reference(settings: Settings, path: Path) -> dict[str, int]:
    """Keyed records on the compacted reference topics (idempotent: last record per key);
    how many per topic."""
    producer = Producer(producer_config(settings))
    records = orjson.loads(path.read_bytes())
    for name, entries in records.items():
        topic = by_name(name).full_name(settings.topic_prefix)
        for key, value in entries:
            produce(producer, topic, orjson.dumps(value), key)
    if producer.flush(30):
        raise BoxsyncError("could not deliver the demo reference data")
    return {name: len(entries) for name, entries in records.items()}


def _end_offsets(settings: Settings, topics: list[str]) -> list[TopicPartition]:
    consumer = Consumer(consumer_config(settings, "boxsync-demo"))
    try:
        metadata = consumer.list_topics(timeout=10)
        positions = []
        for name in topics:
            if name not in metadata.topics:
                raise BoxsyncError(f"topic {name} does not exist; run `boxsync topics create`")
            for partition in metadata.topics[name].partitions:
                tp = TopicPartition(name, partition)
                _, high = consumer.get_watermark_offsets(tp, timeout=10)
                positions.append(TopicPartition(name, partition, high))
        return positions
    finally:
        consumer.close()


def _collect(settings: Settings, start: list[TopicPartition], updates_topic: str,
             expected_letters: int, timeout: float
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    consumer = Consumer(consumer_config(settings, "boxsync-demo"))
    consumer.assign(start)
    updates: list[dict[str, Any]] = []
    letters: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                # Done once updates came and nothing more arrived for a window's length.
                if updates and len(letters) >= expected_letters and \
                        time.monotonic() - quiet_since > settings.collapse_interval_seconds:
                    break
                continue
            quiet_since = time.monotonic()
            record = orjson.loads(message.value() or b"{}")
            (updates if message.topic() == updates_topic else letters).append(record)
    finally:
        consumer.close()
    return updates, letters


def _show(updates: list[dict[str, Any]], letters: list[dict[str, Any]], as_json: bool) -> None:
    click.echo(f"\ntask.updates ({len(updates)}):")
    for update in updates:
        if as_json:
            click.echo(orjson.dumps(update, option=orjson.OPT_INDENT_2).decode())
            continue
        author = update["author"].get("name") or update["author"].get("id") or "technical"
        click.echo(f"  {update['source_key']} {update['op']} by {author}, "
                   f"{update['collapsed']} events collapsed, window "
                   f"{update['window_start'][11:19]}-{update['window_end'][11:19]}, "
                   f"boxes {update['box_ids']} (update_id {update['update_id'][:12]}...)")
        for name, value in sorted(update["changes"].items()):
            click.echo(f"      {name:16} {orjson.dumps(value).decode()}")
    click.echo(f"\nsync.deadletter ({len(letters)}):")
    for letter in letters:
        click.echo(f"  {letter['source_topic']}[{letter['partition']}]@{letter['offset']}: "
                   f"{letter['error']['type']}: {letter['error']['message'][:80]}")


def _is_json(value: bytes) -> bool:
    try:
        orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return True
