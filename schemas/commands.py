"""Commands boxsync reads and the statuses it answers with (contract §2 SyncStatus, §4).

`SyncCommand` arrives on `sync.commands` (keyed by box id, or none); every command ends in at
least one `SyncStatus` on `sync.status`. Both follow the message rules of `schemas.events`:
`schema_version: 1`, readers ignore unknown fields, timestamps are timezone-aware and are
normalized to UTC (written as `...Z`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, Field, field_validator, model_validator

from schemas.events import Message, Person

CommandType = Literal[
    "open_box", "resync_box", "resync_all", "plugin_toggled", "plugin_updated",
    "cache_cleared", "scope_saved", "incremental_sync", "jira_index_status",
    "clear_box_warnings"]
SyncType = Literal["partial", "full", "incremental"]
SyncState = Literal["flagged", "queued", "running", "completed", "failed", "refused"]

# Why a command (or a box within a command) was refused.
COMMAND_REFUSALS: tuple[str, ...] = (
    "forbidden", "not_available_for_non_scope_box", "box_closed", "jira_index_corrupted",
    "bulk_resync_not_allowed", "unknown_box", "invalid_command")
# Why `incremental_sync` left a box out (the filter reasons of contract §9).
INCREMENTAL_SKIPS: tuple[str, ...] = (
    "box_closed", "box_archived", "corrupted_scope", "waiting_for_full_sync", "non_scope_box")
# Why a run that started did not complete (`interrupted`: its worker died mid-run).
FAILURE_REASONS: tuple[str, ...] = ("source_auth_failed", "source_unavailable", "interrupted")
REFUSAL_REASONS: tuple[str, ...] = tuple(dict.fromkeys(
    COMMAND_REFUSALS + INCREMENTAL_SKIPS + FAILURE_REASONS))
"""Every `SyncStatus.reason` boxsync writes, without duplicates."""

_TRUE, _FALSE = "true", "false"


def parse_flag(value: object) -> bool | None:
    """A boolean parameter as JSON (`true`) or as the CLI sends it (`"true"`, any case);
    None when it is missing or anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (_TRUE, _FALSE):
        return value.strip().lower() == _TRUE
    return None


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# A naive datetime is refused: its instant would depend on the reader's time zone.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class SyncCommand(Message):
    """One command on `sync.commands`; handled once per `command_id`."""

    schema_version: Literal[1] = 1
    command_id: str = Field(min_length=1)
    type: CommandType
    box_id: str | None = None
    requested_by: Person
    requested_at: UtcDatetime
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("command_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        # A blank id would make every such command "already handled" after the first one.
        if not value.strip():
            raise ValueError("command_id must not be blank")
        return value

    @property
    def force(self) -> bool:
        """`params.force`: run a full sync despite a corrupted Jira index (audited)."""
        return parse_flag(self.params.get("force")) is True

    @property
    def corrupted(self) -> bool | None:
        """`params.corrupted` of `jira_index_status`; None when missing or not a boolean
        (the command is then refused with `invalid_command`)."""
        return parse_flag(self.params.get("corrupted"))


class SyncStatus(Message):
    """One state of a command or sync run on `sync.status`, keyed by box id.

    `box_id` is None for tenant-wide statuses (`resync_all`, `jira_index_status`, the
    `incremental_sync` run); `sync_type` is None for commands that run nothing; `reason` is
    set for `refused` and `failed` (one of REFUSAL_REASONS); `read_only` is true while a full
    sync runs on the box.
    """

    schema_version: Literal[1] = 1
    box_id: str | None = None
    run_id: str | None = None
    command_id: str | None = None  # additive: the command this status answers
    sync_type: SyncType | None = None
    state: SyncState
    reason: str | None = None
    processed: int = Field(0, ge=0)
    total: int | None = Field(None, ge=0)
    read_only: bool = False
    requested_by: Person | None = None
    at: UtcDatetime
    # Additive: for `failed`, what went wrong and what to do next (one line, no secrets).
    detail: str | None = None

    @model_validator(mode="after")
    def _reason_when_not_ok(self) -> SyncStatus:
        # Dashboards show the reason of a refusal or failure; one without it says nothing.
        if self.state in ("refused", "failed") and not self.reason:
            raise ValueError(f"a {self.state} status needs a reason")
        return self
