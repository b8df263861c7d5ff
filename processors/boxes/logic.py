"""Box state, pure: which upstream facts corrupt a box's scope, and the statuses that say so.

Corrupted scope (behaviour.md "Filters"): a box whose scope names a deleted or archived Jira
project (`project_deleted`, `project_archived`, `project_soft_deleted`), a deleted or closed
Trello board, or whose scope owner lost access to a scope project (a tombstone of their grant on
`jira.permissions`) is flagged with a warning naming the cause, and takes no update until a box
admin clears the warnings (`clear_box_warnings`). Each warning is keyed by its cause, so a
replayed event raises nothing twice and never re-raises a cleared warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from processors.filters.logic import scope_projects
from processors.wire import SCHEMA_VERSION
from schemas.reference import Box

CORRUPTING_EVENTS = {
    "project_deleted": "project deleted",
    "project_soft_deleted": "project moved to the trash",
    "project_archived": "project archived",
    "board_deleted": "board deleted",
    "board_closed": "board closed",
}


@dataclass(frozen=True, slots=True)
class BoxWarning:
    box_id: str
    cause_id: str
    kind: str
    message: str


def scope_subject(event: Mapping[str, Any]) -> str | None:
    """The project (Jira key or `trello:<board>`) a reference event corrupts, if it does."""
    if event.get("upstream_event") not in CORRUPTING_EVENTS:
        return None
    project = event.get("project")
    return project if isinstance(project, str) and project else None


def warnings_for_event(event: Mapping[str, Any], boxes: Iterable[Box]) -> list[BoxWarning]:
    """Warnings for the boxes whose scope names the project or board the event removed."""
    subject = scope_subject(event)
    if subject is None:
        return []
    what = CORRUPTING_EVENTS[str(event["upstream_event"])]
    return [BoxWarning(box.box_id, str(event["event_id"]), str(event["upstream_event"]),
                       f"{subject}: {what} upstream; fix the scope, then clear the warning")
            for box in boxes if subject in scope_projects(box)]


def warnings_for_revoked_grant(user_id: str, project: str, cause_id: str,
                               boxes: Iterable[Box]) -> list[BoxWarning]:
    """Warnings for the boxes whose scope owner lost access to one of their scope projects."""
    return [BoxWarning(box.box_id, cause_id, "scope_owner_lost_access",
                       f"scope owner {user_id} lost access to {project}; restore it or change "
                       f"the scope owner, then clear the warning")
            for box in boxes
            if box.scope_owner is not None and box.scope_owner.id == user_id
            and project in scope_projects(box)]


def sync_status(box_id: str | None, state: str, at: str, *, reason: str | None = None,
                command_id: str | None = None, requested_by: Mapping[str, Any] | None = None,
                run_id: str | None = None, sync_type: str | None = None, processed: int = 0,
                total: int | None = None, read_only: bool = False,
                detail: str | None = None) -> dict[str, Any]:
    """A `SyncStatus` message as a dict (contract §2)."""
    return {"schema_version": SCHEMA_VERSION, "box_id": box_id, "run_id": run_id,
            "command_id": command_id,
            "sync_type": sync_type, "state": state, "reason": reason, "processed": processed,
            "total": total, "read_only": read_only,
            "requested_by": dict(requested_by) if requested_by is not None else None, "at": at,
            "detail": detail}


def status_key(status: Mapping[str, Any]) -> str:
    """The record key of a status: its box; for a tenant-wide one (no box), its run or
    command, so that the statuses of one run stay in order on one partition."""
    return str(status.get("box_id") or status.get("run_id") or status.get("command_id") or "")
