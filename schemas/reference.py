"""Reference data boxsync reads (contract §3), from compacted topics: boxes, permissions and
OKR links. A record with a null value (a tombstone) deletes the box, revokes the grant or
removes the link of its key."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import Person


class Reference(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class BoxScope(Reference):
    jira_projects: list[str] = Field(default_factory=list)
    trello_boards: list[str] = Field(default_factory=list)
    labels_all: list[str] = Field(default_factory=list)
    jql: str | None = None  # passed to Jira on full sync only


class Box(Reference):
    """On `box.definitions`, keyed by `box_id`."""

    schema_version: Literal[1] = 1
    box_id: str
    name: str
    box_type: str  # portfolio, program, project, iteration, sprint, or a custom name
    scope_type: Literal["own", "sub", "none"]
    parent_box_id: str | None = None
    status: Literal["not_started", "in_progress", "closed"] = "not_started"
    archived: bool = False
    scope: BoxScope = Field(default_factory=BoxScope)
    manual_tasks: list[str] = Field(default_factory=list)
    scope_owner: Person | None = None
    admins: list[str] = Field(default_factory=list)
    task_mode_default: str | None = None
    timezone: str | None = None


class PermissionGrant(Reference):
    """On `jira.permissions`, keyed by `<user id>|<project key>` (or `trello:<board id>`)."""

    schema_version: Literal[1] = 1
    user_id: str
    project: str
    permissions: list[str] = Field(default_factory=list)
    updated_at: datetime | None = None


class KeyResultLink(Reference):
    """On `okr.links`, keyed by `key_result_id`."""

    schema_version: Literal[1] = 1
    key_result_id: str
    objective_id: str
    mode: Literal["auto", "manual"]
    task_ids: list[str] = Field(default_factory=list)
    box_ids: list[str] = Field(default_factory=list)


def permission_key(user_id: str, project: str) -> str:
    """The record key of a grant on `jira.permissions`."""
    return f"{user_id}|{project}"
