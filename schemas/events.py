"""Messages boxsync writes (contract §2): the pydantic models that define their shape.

These classes are the contract and the source of the exported JSON Schemas. The hot path
builds the same shapes as plain dicts serialized with orjson (a pydantic round trip per event
would cost more than the rest of the pipeline); tests validate what the hot path writes
against these models, so the two cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

Source = Literal["jira", "trello"]
PersonKind = Literal["user", "scope_owner", "technical"]


class Message(BaseModel):
    """Common settings: readers ignore unknown fields (evolution is additive)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Person(Message):
    kind: PersonKind
    id: str | None = None
    name: str | None = None
    source: Literal["jira", "trello", "app"]


class Origin(Message):
    """Where a change event was read: the raw topic, partition and offset."""

    topic: str
    partition: int
    offset: int
    # Additive: the broker's id of the topic's incarnation; offsets of two incarnations of
    # one topic name different records.
    topic_id: str | None = None


class ChangeEvent(Message):
    """One normalized upstream change, keyed by task id on `sync.changes`."""

    schema_version: Literal[1] = 1
    event_id: str
    task_id: str
    source: Source
    source_key: str | None = None
    project: str | None = None
    kind: Literal["created", "updated", "deleted", "activity"]
    occurred_at: datetime
    author: Person
    changes: dict[str, Any] = Field(default_factory=dict)
    origin: Origin
    # Additive: the upstream tie-breaker for equal source times (a zero-padded Jira changelog
    # id, or a Trello action id); empty when the body has none.
    tiebreak: str = ""
    # Additive: the upstream event name (`jira:issue_updated`, `updateCard`, ...).
    upstream_event: str | None = None
    # Additive (issue 18): authored with accountType `app` by boxsync's own integration user
    # (BOXSYNC_JIRA_INTEGRATION_ACCOUNT_ID): likely the echo of a write-back. Absent: false.
    likely_echo: bool = False


class TaskUpdate(Message):
    """The collapsed result for one task and one window (or one sync run)."""

    schema_version: Literal[1] = 1
    update_id: str
    task_id: str
    source: Source
    source_key: str | None = None
    op: Literal["upsert", "delete"]
    box_ids: list[str] = Field(default_factory=list)
    left_box_ids: list[str] = Field(default_factory=list)
    changes: dict[str, Any] = Field(default_factory=dict)
    author: Person
    sync_type: Literal["partial", "full", "incremental"]
    source_updated_at: datetime
    window_start: datetime | None = None
    window_end: datetime | None = None
    collapsed: int = Field(ge=0)
    event_ids: list[str] = Field(default_factory=list)
    # Additive: the project (Jira key or `trello:<board>`) of the task, for the filters.
    project: str | None = None


class ReferenceEvent(Message):
    """A Jira project, version, sprint or board event (not about one task), passed on to
    `sync.reference` for the box filters: e.g. `project_deleted` or `project_archived` for a
    project in a box's scope flags the box's scope as corrupted."""

    schema_version: Literal[1] = 1
    event_id: str
    source: Source
    site: str | None = None
    upstream_event: str  # project_deleted, jira:version_released, sprint_started, ...
    entity: Literal["project", "version", "sprint", "board"]
    entity_id: str
    project: str | None = Field(None, description="the Jira project key, where the body says")
    occurred_at: datetime
    data: dict[str, Any] = Field(default_factory=dict)
    origin: Origin


class KeyResultProgress(Message):
    """On `okr.updates`, keyed by key result id: a linked task changed status."""

    schema_version: Literal[1] = 1
    key_result_id: str
    objective_id: str
    mode: Literal["auto", "manual"]
    task_id: str
    task_status: str | None = None
    status_category: str | None = None
    # auto key results only; null for manual ones (they report the status alone)
    done: int | None = Field(None, ge=0)
    total: int | None = Field(None, ge=0)
    progress_pct: float | None = Field(None, ge=0, le=100)
    at: datetime


class ErrorInfo(Message):
    type: str
    message: str


class DeadLetter(Message):
    """A record that could not be processed, with the reason and the original bytes."""

    schema_version: Literal[1] = 1
    source_topic: str
    partition: int
    offset: int
    key: str | None = None
    value: str | None = Field(None, description="the original value bytes, base64")
    headers: dict[str, str | None] = Field(default_factory=dict)
    error: ErrorInfo
    processor: str
    at: datetime
    # Additive: a value over 512 KiB keeps its first 512 KiB, so that the letter fits on the
    # topic; then value_truncated is true and value_bytes is the original length.
    value_truncated: bool = False
    value_bytes: int | None = None


ALL_MODELS: dict[str, type[BaseModel]] = {
    "ChangeEvent": ChangeEvent,
    "TaskUpdate": TaskUpdate,
    "DeadLetter": DeadLetter,
    "ReferenceEvent": ReferenceEvent,
    "KeyResultProgress": KeyResultProgress,
    "Person": Person,
}
