"""Records as every stage meets them: a consumed confluent-kafka message as a plain, typed
`RawRecord` (one place for the casts), and what a stage writes for a record it cannot
process (`Rejected` → a `DeadLetter`, contract §2)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import Message

from processors.wire import SCHEMA_VERSION, iso_utc


# Not frozen: a frozen dataclass's __init__ costs a setattr call per field, per event.
@dataclass(slots=True)
class RawRecord:
    """A record as read from an upstream topic (`topic` is the unprefixed registry name)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes | None] = field(default_factory=dict)
    # The topic's real name, with BOXSYNC_TOPIC_PREFIX (empty: the same as `topic`).
    full_topic: str = ""
    # The id of the topic's incarnation (processors.runtime.incarnations), when known.
    topic_id: str | None = None

    @property
    def topic_name(self) -> str:
        return self.full_topic or self.topic

    def origin(self) -> dict[str, str | int]:
        """The ChangeEvent's `origin`: this record's coordinates and topic incarnation."""
        found: dict[str, str | int] = {"topic": self.full_topic or self.topic,
                                       "partition": self.partition, "offset": self.offset}
        if self.topic_id is not None:
            found["topic_id"] = self.topic_id
        return found

    def header(self, name: str) -> str | None:
        raw = self.headers.get(name)
        return raw.decode("utf-8", "replace") if raw else None


@dataclass(slots=True)
class Rejected:
    """A record that cannot be processed; it becomes a dead letter with this reason."""

    reason: str
    message: str
    # For `unknown_site`: the issue id, so the wiring can ask the app cache for its site.
    issue_id: str | None = None


# A dead letter must fit on a topic with the broker's usual 1 MB record limit, whatever it
# holds: base64 makes the value a third longer, so a rejected body near that limit made a
# letter the producer refused (MSG_SIZE_TOO_LARGE), and the stage restarted on the same record
# for good. The value keeps its first 512 KiB (and says so); key and headers 1,024 characters.
DEAD_VALUE_BYTES = 512 * 1024
DEAD_TEXT_CHARS = 1024


def dead_letter(record: RawRecord, rejected: Rejected, processor: str,
                now: datetime) -> dict[str, Any]:
    """The `DeadLetter` message (contract §2) for a rejected record."""
    value = record.value
    letter: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "source_topic": record.topic_name,
        "partition": record.partition,
        "offset": record.offset,
        "key": _bounded_text(record.key),
        "value": base64.b64encode(value[:DEAD_VALUE_BYTES]).decode() if value is not None
        else None,
        "headers": {name[:DEAD_TEXT_CHARS]: _bounded_text(raw)
                    for name, raw in list(record.headers.items())[:64]},
        "error": {"type": rejected.reason, "message": rejected.message[:DEAD_TEXT_CHARS]},
        "processor": processor,
        "at": iso_utc(now),
    }
    if value is not None and len(value) > DEAD_VALUE_BYTES:
        letter["value_truncated"] = True
        letter["value_bytes"] = len(value)
    return letter


def _bounded_text(raw: bytes | None) -> str | None:
    return raw[:DEAD_TEXT_CHARS * 4].decode("utf-8", "replace")[:DEAD_TEXT_CHARS] \
        if raw is not None else None



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
