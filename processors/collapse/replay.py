"""After a restart: which re-read changes did updates on `task.updates` already cover?

The collapse commits, with each partition's offset, the wall time since which its oldest open
window was open (`open_since`). Every update emitted from changes at or after the committed
offset was published after that moment, so reading the same partition of `task.updates` from a
little before then to its end finds all of them.
"""

from __future__ import annotations

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition

from processors.runtime.kafka import consumer_config
from processors.settings import Settings

# Producer clocks and the broker's may disagree a little; look back a bit further.
CLOCK_MARGIN_MS = 60_000


def emitted_event_ids(settings: Settings, updates_topic: str, partition: int,
                      metadata: str | None) -> set[tuple[str, str]]:
    """(task id, event id) of the changes the partial updates emitted since the partition's
    oldest open window cover. Keyed by task, not by event id alone: Jira's delivery id is
    unique within one site only, and the task id names the site."""
    if not metadata:
        return set()
    try:
        open_since = float(orjson.loads(metadata)["open_since"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return set()
    reader = Consumer(consumer_config(settings, group="boxsync-replay-scan",
                                      **{"enable.auto.offset.store": False}))
    try:
        start_ms = int(open_since * 1000) - CLOCK_MARGIN_MS
        start = reader.offsets_for_times([TopicPartition(updates_topic, partition, start_ms)],
                                         timeout=15)[0]
        _, high = reader.get_watermark_offsets(TopicPartition(updates_topic, partition),
                                               timeout=15)
        if start.offset < 0 or start.offset >= high:
            return set()
        reader.assign([TopicPartition(updates_topic, partition, start.offset)])
        return _read_event_ids(reader, TopicPartition(updates_topic, partition), high)
    except KafkaException:
        # Without the scan a replay may emit an update twice (same update_id); never lose one.
        return set()
    finally:
        reader.close()


def _read_event_ids(reader: Consumer, partition: TopicPartition, high: int
                    ) -> set[tuple[str, str]]:
    """Read to the high watermark. The position, not the last data offset, tells when: the
    last offsets of a transactional topic are commit markers that never come back as data."""
    covered: set[tuple[str, str]] = set()
    idle_polls = 0
    while idle_polls < 4:
        messages = reader.consume(1000, 0.5)
        idle_polls = 0 if messages else idle_polls + 1
        for message in messages:
            if message.error():
                continue
            update = orjson.loads(message.value() or b"{}")
            if update.get("sync_type") == "partial":
                task_id = str(update.get("task_id"))
                covered.update((task_id, str(event_id))
                               for event_id in update.get("event_ids") or ())
        if reader.position([partition])[0].offset >= high:
            break
    return covered
