"""Full and incremental sync, pure parts: which source tasks a run takes, the `TaskUpdate`s it
emits, and when it reports progress.

- A full sync takes only the tasks the scope owner may browse (`jira.permissions`:
  `BROWSE_PROJECTS` on the Jira project, `BOARD_MEMBER` on the Trello board); a box without a
  scope owner syncs as the technical user, who sees everything. Trello has no JQL: the
  `labels_all` narrowing is applied here (Jira's is in the query).
- Its updates carry every field, `sync_type: full`, the run's author (the requester, or the
  scope owner for background runs) and the box; tasks the box held and the source no longer
  selects get an update with the box in `left_box_ids`.
- An incremental sync takes the tasks whose source time differs from the cached one by more
  than `SAME_TIME_TOLERANCE` (webhook and REST times of one change differ by milliseconds).
- Progress is published at least every `PROGRESS_SECONDS` (the contract says 2 s at most).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from processors.filters.logic import BOARD_MEMBER, BROWSE_PROJECTS
from processors.sources.model import SourceTask
from processors.wire import SCHEMA_VERSION, iso, update_id

PROGRESS_SECONDS = 1.5
SAME_TIME_TOLERANCE = 1.0
TECHNICAL_APP = {"kind": "technical", "id": None, "name": None, "source": "app"}


def visible(task: SourceTask, owner_id: str | None,
            grants: Mapping[str, frozenset[str]]) -> bool:
    """May the scope owner see this task? (None: no owner, the technical user sees all.)"""
    if owner_id is None:
        return True
    needed = BOARD_MEMBER if task.source == "trello" else BROWSE_PROJECTS
    return task.project is not None and needed in grants.get(task.project, frozenset())


def has_labels(task: SourceTask, labels_all: Iterable[str]) -> bool:
    labels = task.fields.get("labels")
    held = set(labels) if isinstance(labels, list) else set()
    return held.issuperset(labels_all)


def differs(task: SourceTask, cached_at: float | None) -> bool:
    """Incremental sync: is the source's time for this task not the one boxsync has?"""
    return cached_at is None or abs(task.updated_at - cached_at) > SAME_TIME_TOLERANCE


def synced_update(task: SourceTask, fields: dict[str, Any], at: float, run_id: str,
                  sync_type: str, author: Mapping[str, Any], box_id: str) -> dict[str, Any]:
    """The `TaskUpdate` of one task a run read (fields as merged into the cache)."""
    return {"schema_version": SCHEMA_VERSION,
            "update_id": update_id(task.task_id, sync_type, run_id),
            "task_id": task.task_id, "source": task.source, "source_key": task.source_key,
            "project": task.project, "op": "upsert", "box_ids": [box_id], "left_box_ids": [],
            "changes": fields, "author": dict(author), "sync_type": sync_type,
            "source_updated_at": iso(at), "window_start": None, "window_end": None,
            "collapsed": 0, "event_ids": []}


def left_update(task_id: str, source: str, at: float, run_id: str,
                author: Mapping[str, Any], box_id: str) -> dict[str, Any]:
    """The update that tells a box to drop a task its scope no longer selects."""
    return {"schema_version": SCHEMA_VERSION, "update_id": update_id(task_id, "full", run_id),
            "task_id": task_id, "source": source, "op": "upsert", "box_ids": [],
            "left_box_ids": [box_id], "changes": {}, "author": dict(author),
            "sync_type": "full", "source_updated_at": iso(at), "window_start": None,
            "window_end": None, "collapsed": 0, "event_ids": []}


def source_of(task_id: str) -> str:
    return "trello" if task_id.startswith("trello:") else "jira"


@dataclass
class ProgressClock:
    """When to publish the next progress status (at least every PROGRESS_SECONDS)."""

    last: float

    def due(self, now: float) -> bool:
        if now - self.last >= PROGRESS_SECONDS:
            self.last = now
            return True
        return False
