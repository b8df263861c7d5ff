"""Ingest, pure logic: one raw upstream record → a change, a reference event (project,
version, sprint, board), a counted pass-over, or a rejection.

No I/O here. `ingest()` never raises for any input bytes: every outcome is a value, so the
wiring can publish, count or dead-letter it and move on.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from processors.ingest import jira, trello
from processors.ingest.outcomes import Accepted, IngestConfig, PassedOver, Reference, Rejected
from processors.ingest.text import clean_text

__all__ = ["Accepted", "IngestConfig", "PassedOver", "RawRecord", "Reference", "Rejected",
           "dead_letter", "ingest"]


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


def ingest(record: RawRecord, config: IngestConfig) -> Accepted | Reference | PassedOver | Rejected:
    """Decode and normalize one raw record."""
    value = record.value
    if value is None or not value.strip():
        return Rejected("empty_body", "the record has no value")
    if len(value) > config.max_event_bytes:
        return Rejected("too_large",
                        f"body of {len(value)} bytes exceeds BOXSYNC_MAX_EVENT_BYTES="
                        f"{config.max_event_bytes}")
    try:
        body = orjson.loads(value)
        # A substring test first: most bodies hold no \u escape at all.
        suspicious = b"\\u" in value and _UNSTORABLE_ESCAPE.search(value) is not None
    except orjson.JSONDecodeError as exc:
        # orjson refuses lone surrogates; the standard parser keeps them, to be replaced.
        body = _lenient_loads(value)
        if body is None:
            return Rejected("invalid_json", f"not valid JSON: {exc}")
        suspicious = True
    if not isinstance(body, dict):
        return Rejected("not_an_object", f"expected a JSON object, got {type(body).__name__}")
    if _too_deep(body, value):
        return Rejected("too_deep", f"nested deeper than {MAX_DEPTH} levels")
    result = _normalize(body, record, config)
    if suspicious and isinstance(result, Accepted):
        # Normalization cleans the text it reads; this catches whatever else it passed on.
        result.change, result.sanitized = deep_clean(result.change), True
    return result


def _normalize(body: dict[str, Any], record: RawRecord, config: IngestConfig
               ) -> Accepted | Reference | PassedOver | Rejected:
    if record.topic == "jira.events":
        return jira.normalize(body, record, config)
    if record.topic == "trello.events":
        return trello.normalize(body, record, config)
    return PassedOver("unsupported_topic", record.topic)


# JSON escapes of what PostgreSQL or UTF-8 cannot store: C0 controls (NUL among them) and
# surrogates. Raw control bytes are invalid JSON already; a body without these escapes needs
# no cleaning beyond what normalization does, which keeps the check off the hot path.
_UNSTORABLE_ESCAPE = re.compile(rb"\\u00[01][0-9a-fA-F]|\\u[dD][89a-fA-F]")


# Upstream bodies nest about ten levels. orjson parses up to 1,024, and the Python code that
# reads a value (the normalizers, repr in a rejection's message) recursed past the interpreter's
# limit on such bodies: a RecursionError per try, so one body stopped its partition for good
# (found by `make chaos`, fuzz part).
MAX_DEPTH = 64


def _too_deep(body: Any, raw: bytes) -> bool:
    """Whether the parsed body nests deeper than MAX_DEPTH. A body with fewer brackets than
    that cannot, which spares the walk on nearly every body."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return False
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))
    return False


def _lenient_loads(value: bytes) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(value, parse_constant=refuse)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def deep_clean(value: Any) -> Any:
    """Every string (keys too) of a JSON value made storable (see processors.ingest.text)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k) if isinstance(k, str) else k: deep_clean(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [deep_clean(item) for item in value]
    return value


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
        "schema_version": 1,
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


def iso_utc(moment: datetime) -> str:
    """ISO-8601 in UTC with a `Z`, milliseconds kept (the contract's timestamp form)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
