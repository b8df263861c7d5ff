"""A reference topic read whole, to rebuild boxsync's view of it after the topic was
re-created (processors.runtime.incarnations).

The compacted topic is the truth: its last record per key is what the view must hold, and
nothing else; rows of the old incarnation that the new one does not hold must go. The view is
replaced in one database transaction, so a reader (a full sync looking up its box) sees the
old view or the new one, never a gap between them.
"""

from __future__ import annotations

import time

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from processors.errors import UnavailableError
from processors.filters.reference import BadReference, ReferenceState
from processors.runtime.kafka import consumer_config, read_to_end
from processors.settings import Settings
from processors.store.boxes import ReferenceRow

READ_TIMEOUT_SECONDS = 120.0


def latest_records(settings: Settings, full_name: str) -> dict[str, ReferenceRow]:
    """Key → the topic's last record of that key (a tombstone as value None), read from the
    start of every partition to its end."""
    consumer = Consumer(consumer_config(
        settings, f"{settings.topic_prefix}boxsync-reference-rebuild",
        **{"enable.partition.eof": True}))
    try:
        found = consumer.list_topics(full_name, timeout=15).topics.get(full_name)
        if found is None or found.error is not None:
            raise UnavailableError(f"topic {full_name} does not exist; run `boxsync topics "
                                   "create`")
        consumer.assign([TopicPartition(full_name, p, OFFSET_BEGINNING)
                         for p in found.partitions])
        latest: dict[str, ReferenceRow] = {}

        def keep(message: Message) -> None:
            key = (message.key() or b"").decode("utf-8", "replace")
            raw = message.value()
            latest[key] = ReferenceRow(key, None if raw is None else _object(raw),
                                       message.partition() or 0, message.offset() or 0)

        left = read_to_end(consumer, {(full_name, p) for p in found.partitions}, keep,
                           time.monotonic() + READ_TIMEOUT_SECONDS, time.monotonic)
        if left:
            raise UnavailableError(f"{full_name} not read to its end within "
                                   f"{READ_TIMEOUT_SECONDS:.0f}s")
        return latest
    finally:
        consumer.close()


def valid_rows(name: str, latest: dict[str, ReferenceRow]) -> tuple[list[ReferenceRow], int]:
    """The rows that validate as records of `name`, and how many did not (the stage, reading
    the topic from its start, dead-letters those)."""
    rows, invalid = [], 0
    for row in latest.values():
        try:
            if row.value is not None and not isinstance(row.value, dict):
                raise BadReference("not a JSON object")
            ReferenceState().apply(name, row.key, row.value)
        except BadReference:
            invalid += 1
            continue
        rows.append(row)
    return rows, invalid


def _object(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")
