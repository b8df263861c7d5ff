"""A consumed confluent-kafka message as a plain, typed `RawRecord` (one place for the casts)."""

from __future__ import annotations

from confluent_kafka import Message

from processors.ingest.logic import RawRecord


def raw_record(message: Message, registry_name: str) -> RawRecord:
    """`registry_name` is the topic's unprefixed name (`jira.events`)."""
    raw_headers = message.headers()
    headers = {name.lower(): value for name, value in header_pairs(message)} \
        if raw_headers else {}
    return RawRecord(topic=registry_name, partition=message.partition() or 0,
                     offset=message.offset() or 0, key=_bytes(message.key()),
                     value=_bytes(message.value()), headers=headers,
                     full_topic=message.topic() or registry_name)


def header_pairs(message: Message) -> list[tuple[str, bytes | None]]:
    """A message's headers as (name, bytes) pairs, in order."""
    raw = message.headers() or []
    # A list from a consumer, though the stubs also allow a dict.
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(name, _bytes(value)) for name, value in pairs]


def _bytes(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data
