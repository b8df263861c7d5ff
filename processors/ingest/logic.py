"""Ingest, pure logic: one raw upstream record → a change, a reference event (project,
version, sprint, board), a counted pass-over, or a rejection.

No I/O here. `ingest()` never raises for any input bytes: every outcome is a value, so the
wiring can publish, count or dead-letter it and move on.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from processors.ingest import jira, trello
from processors.ingest.outcomes import Accepted, IngestConfig, PassedOver, Reference
from processors.ingest.text import clean_text
from processors.runtime.records import RawRecord, Rejected

__all__ = ["Accepted", "IngestConfig", "PassedOver", "RawRecord", "Reference", "Rejected",
           "ingest"]


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
