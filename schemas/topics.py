"""The one topic registry (contract §1): the only place a topic name is written.

Every topic keyed by task id has the same partition count, so that the same task lands on the
same partition number of `sync.changes` and `task.updates` (the collapse relies on it when it
checks, after a restart, which windows it already emitted).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DAY_MS = 24 * 3600 * 1000


class Cleanup(StrEnum):
    DELETE = "delete"
    COMPACT = "compact"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    value: str
    cleanup: Cleanup
    retention_ms: int | None = None
    keyed_by_task: bool = False

    def full_name(self, prefix: str) -> str:
        return f"{prefix}{self.name}"

    def config(self) -> dict[str, str]:
        config = {"cleanup.policy": self.cleanup.value}
        if self.retention_ms is not None:
            config["retention.ms"] = str(self.retention_ms)
        return config


JIRA_EVENTS = TopicSpec("jira.events", "issue key or none", "raw Jira webhook body",
                        Cleanup.DELETE, 7 * DAY_MS)
TRELLO_EVENTS = TopicSpec("trello.events", "card id or none", "raw Trello webhook body",
                          Cleanup.DELETE, 7 * DAY_MS)
SYNC_COMMANDS = TopicSpec("sync.commands", "box id or none", "SyncCommand",
                          Cleanup.DELETE, 7 * DAY_MS)
BOX_DEFINITIONS = TopicSpec("box.definitions", "box id", "Box or tombstone", Cleanup.COMPACT)
JIRA_PERMISSIONS = TopicSpec("jira.permissions", "user id|project key",
                             "PermissionGrant or tombstone", Cleanup.COMPACT)
OKR_LINKS = TopicSpec("okr.links", "key result id", "KeyResultLink or tombstone", Cleanup.COMPACT)
SYNC_CHANGES = TopicSpec("sync.changes", "task id", "ChangeEvent", Cleanup.DELETE,
                         keyed_by_task=True)
TASK_UPDATES = TopicSpec("task.updates", "task id", "TaskUpdate", Cleanup.DELETE,
                         keyed_by_task=True)
SYNC_STATUS = TopicSpec("sync.status", "box id", "SyncStatus", Cleanup.DELETE)
OKR_UPDATES = TopicSpec("okr.updates", "key result id", "KeyResultProgress", Cleanup.DELETE)
# Internal, documented: Jira project/version/sprint/board events, for the box filters.
SYNC_REFERENCE = TopicSpec("sync.reference", "<entity>:<site>:<id>", "ReferenceEvent",
                           Cleanup.DELETE, 30 * DAY_MS)
SYNC_DEADLETTER = TopicSpec("sync.deadletter", "the original key", "DeadLetter",
                            Cleanup.DELETE, 30 * DAY_MS)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    JIRA_EVENTS, TRELLO_EVENTS, SYNC_COMMANDS, BOX_DEFINITIONS, JIRA_PERMISSIONS, OKR_LINKS,
    SYNC_CHANGES, TASK_UPDATES, SYNC_STATUS, OKR_UPDATES, SYNC_DEADLETTER, SYNC_REFERENCE,
)


def by_name(name: str) -> TopicSpec:
    """The spec of a topic given its unprefixed name (`jira.events`)."""
    for spec in ALL_TOPICS:
        if spec.name == name:
            return spec
    known = ", ".join(spec.name for spec in ALL_TOPICS)
    raise KeyError(f"unknown topic {name!r}; known topics: {known}")
