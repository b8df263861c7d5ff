"""What the task sources return, and how they fail.

A source (Jira, Trello) yields `SourcePage`s of `SourceTask`s: one task per issue or card, in
the identity of the contract (§2: `jira:<site>:<issue id>`, `trello:<card id>`) and with its
fields already in the normalized names of contract §5, so that a full sync can emit them as
they are and an incremental sync can compare `updated_at` with the cached time.

Failures are two: the source refused the credentials (`SourceAuthFailed`, trying again does
not help until someone fixes a setting) or it did not answer usefully (`SourceUnavailable`:
5xx, 429, network errors after the last try, an unexpected status, a malformed answer).
Messages are one line, say what to do next and never hold a secret or a URL's query string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from processors.errors import BoxsyncError

SourceName = Literal["jira", "trello"]


@dataclass(frozen=True, slots=True)
class SourceTask:
    """One issue or card as the source holds it now.

    `updated_at` is the source's last-updated time in epoch seconds (UTC): Jira `updated`,
    Trello `dateLastActivity`. `fields` is empty for the `iter_updated` listings, which ask the
    source for the timestamp only.
    """

    task_id: str
    source: SourceName
    source_key: str | None
    project: str | None
    updated_at: float
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SourcePage:
    """One answer of the source. `total` is how many tasks the whole listing holds, where the
    source says so (Jira Data Center always; Jira Cloud approximately; Trello never: None)."""

    tasks: list[SourceTask]
    total: int | None = None


class SourceError(BoxsyncError):
    """A task source failed. `reason` is the code a failed `SyncStatus` carries; `status` the
    HTTP status of the last answer, when there was one."""

    reason = "source_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SourceAuthFailed(SourceError):
    """401 or 403: the credentials are wrong, expired or lack access. Not retried."""

    reason = "source_auth_failed"
    retriable = False


class SourceUnavailable(SourceError):
    """The source did not answer usefully; a later run may succeed."""

    reason = "source_unavailable"
    retriable = True


def epoch_of_iso(value: Any) -> float | None:
    """An ISO-8601 time with a zone (Jira's `2019-08-11T18:49:13.412-0700`, Trello's
    `...Z`) → epoch seconds; None for anything else, a time without a zone included (its
    instant is unknown)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None
