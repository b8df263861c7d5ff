"""A consumed confluent-kafka message as a plain, typed `RawRecord` (one place for the casts)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Message

from processors.ingest.logic import RawRecord


def raw_record(message: Message, registry_name: str, topic_id: str | None = None) -> RawRecord:
    """`registry_name` is the topic's unprefixed name (`jira.events`); `topic_id` the id of
    its incarnation, where the caller knows it."""
    raw = message.headers()
    headers = {name.lower(): value for name, value in _pairs(raw)} if raw else {}
    return RawRecord(topic=registry_name, partition=message.partition() or 0,
                     offset=message.offset() or 0, key=_bytes(message.key()),
                     value=_bytes(message.value()), headers=headers,
                     full_topic=message.topic() or registry_name, topic_id=topic_id)


def header_pairs(message: Message) -> list[tuple[str, bytes | None]]:
    """A message's headers as (name, bytes) pairs, in order."""
    return _pairs(message.headers())


def _pairs(raw: Any) -> list[tuple[str, bytes | None]]:
    # A list from a consumer, though the stubs also allow a dict.
    pairs = raw.items() if isinstance(raw, dict) else raw or []
    return [(name, _bytes(value)) for name, value in pairs]


def _bytes(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data
