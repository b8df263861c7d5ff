"""A consumed confluent-kafka message as a plain, typed `RawRecord` (one place for the casts)."""

from __future__ import annotations

from confluent_kafka import Message

from processors.ingest.logic import RawRecord


def raw_record(message: Message, registry_name: str) -> RawRecord:
    """`registry_name` is the topic's unprefixed name (`jira.events`)."""
    headers: dict[str, bytes | None] = {}
    raw_headers = message.headers() or []
    # A header list, though the stubs also allow a dict, which the consumer never returns.
    pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
    for name, value in pairs:
        headers[name.lower()] = value.encode() if isinstance(value, str) else value
    return RawRecord(topic=registry_name, partition=message.partition() or 0,
                     offset=message.offset() or 0, key=_bytes(message.key()),
                     value=_bytes(message.value()), headers=headers,
                     full_topic=message.topic() or registry_name)


def _bytes(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data
