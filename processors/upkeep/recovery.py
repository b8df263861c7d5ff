"""Recovery of what was not delivered (issue 18 §3): pure decisions, time injected.

**Failed deliveries.** Jira Cloud lists the webhooks that failed their last retry; each
becomes a raw record on `jira.events` exactly as the gateway would have written it (the
body's bytes, the issue key as key, `x-atlassian-webhook-identifier` = the listed id, and
`x-boxsync-recovered: jira-failed-webhooks`), so ingest normalizes it and the task's dedupe
drops it if the original did arrive after all. The poll resumes after the newest
`failureTime` it fed (a mark in PostgreSQL).

**Silence.** A box whose tasks have not been written for BOXSYNC_SILENCE_RESYNC_MINUTES
(`last_heard`), while Jira reports an issue of its projects updated after that
(`site_changed`, a one-issue search: the site is known to be active), missed events (a Data
Center queue that overflowed, a webhook that expired): an incremental sync of that box is
queued, at most once per silence period per box.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

# A webhook and the REST listing of the same change differ by milliseconds; the cache write
# follows the change by the window (up to 10 s) and grace: only a clear gap counts.
HEARD_MARGIN_SECONDS = 60.0
RECOVERED_HEADER = ("x-boxsync-recovered", b"jira-failed-webhooks")


@dataclass(frozen=True, slots=True)
class Silence:
    box_id: str
    last_heard: float | None  # epoch seconds of the box's newest cache write, None: never
    site_changed: float | None  # epoch seconds of the newest `updated` Jira reports
    last_resync: float | None  # when boxsync last queued a silence resync of the box


def missed(box: Silence, now: float, minutes: int) -> bool:
    """Queue an incremental sync of the box now? (See the module docstring.)"""
    if minutes <= 0 or box.site_changed is None:
        return False
    period = minutes * 60.0
    if box.last_resync is not None and now - box.last_resync < period:
        return False
    heard = box.last_heard if box.last_heard is not None else float("-inf")
    return now - heard >= period and box.site_changed > heard + HEARD_MARGIN_SECONDS


@dataclass(frozen=True, slots=True)
class RawDelivery:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, str | bytes | None]]
    failure_time: int


def delivery(item: Mapping[str, Any], site: str) -> RawDelivery | None:
    """A failed-webhook entry → the raw record to publish; None without an id or a body
    (Jira keeps the body only for a while: the silence resync covers those)."""
    body, webhook_id = item.get("body"), item.get("id")
    failure_time = item.get("failureTime")
    if not isinstance(body, str) or not body or not isinstance(webhook_id, str | int):
        return None
    raw = body.encode()
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None  # ingest dead-letters it, as it would a bad delivery
    issue = parsed.get("issue") if isinstance(parsed, dict) else None
    key = issue.get("key") if isinstance(issue, dict) else None
    return RawDelivery(key.encode() if isinstance(key, str) and key else None, raw,
                       [("x-atlassian-webhook-identifier", str(webhook_id).encode()),
                        ("x-jira-site", site.encode()), RECOVERED_HEADER],
                       int(failure_time) if isinstance(failure_time, int | float) else 0)
