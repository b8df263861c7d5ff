"""Jira Cloud and Data Center webhook bodies, as boxsync reads them (upstream-formats.md A, B).

Lenient on purpose (`extra="allow"`, almost everything optional): real bodies omit users, carry
ids as strings or numbers and localized field names. These models document the shapes and are
used by tests; the hot path reads the same keys with plain dict access
(processors/ingest/jira.py), since a model per event would cost more than the rest of ingest.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class User(Lenient):
    """Cloud: `accountId` (+ `accountType`: atlassian, app, customer). Data Center: `key`
    (stable; `JIRAUSER10231` or the legacy name) and `name`."""

    self_url: str | None = Field(None, alias="self")
    account_id: str | None = Field(None, alias="accountId")
    account_type: str | None = Field(None, alias="accountType")
    key: str | None = None
    name: str | None = None
    display_name: str | None = Field(None, alias="displayName")


class StatusCategory(Lenient):
    id: int | str | None = None
    key: str | None = None  # new, indeterminate, done


class Status(Lenient):
    id: str | int | None = None
    name: str | None = None
    status_category: StatusCategory | None = Field(None, alias="statusCategory")


class Named(Lenient):
    id: str | int | None = None
    key: str | None = None
    name: str | None = None


class IssueFields(Lenient):
    """Known fields; custom fields (`customfield_NNNNN`, site-specific) arrive as extras."""

    summary: str | None = None
    description: str | None = None
    status: Status | None = None
    assignee: User | None = None
    priority: Named | None = None
    duedate: str | None = None
    labels: list[str] | None = None
    parent: Named | None = None
    project: Named | None = None
    issuelinks: list[dict[str, Any]] | None = None


class Issue(Lenient):
    id: str | int | None = None  # a string in real bodies ("10583")
    self_url: str | None = Field(None, alias="self")
    key: str | None = None
    fields: IssueFields | None = None


class ChangelogItem(Lenient):
    """`field` is a display name and may be localized; match on `fieldId` (absent on Data
    Center and on some Cloud items)."""

    field: str | None = None
    field_id: str | None = Field(None, alias="fieldId")
    fieldtype: str | None = None
    from_value: Any = Field(None, alias="from")
    from_string: str | None = Field(None, alias="fromString")
    to: Any = None
    to_string: str | None = Field(None, alias="toString")


class Changelog(Lenient):
    id: str | int | None = None
    items: list[ChangelogItem] = Field(default_factory=list)


class Comment(Lenient):
    id: str | int | None = None
    self_url: str | None = Field(None, alias="self")
    author: User | None = None
    update_author: User | None = Field(None, alias="updateAuthor")


class Worklog(Lenient):
    """Worklog events name their issue by `issueId` only."""

    id: str | int | None = None
    self_url: str | None = Field(None, alias="self")
    issue_id: str | int | None = Field(None, alias="issueId")
    author: User | None = None
    update_author: User | None = Field(None, alias="updateAuthor")


class IssueLink(Lenient):
    """All ids are numbers; there is no self URL, so no site."""

    id: int | str | None = None
    source_issue_id: int | str | None = Field(None, alias="sourceIssueId")
    destination_issue_id: int | str | None = Field(None, alias="destinationIssueId")
    issue_link_type: dict[str, Any] | None = Field(None, alias="issueLinkType")


class WebhookBody(Lenient):
    """Any Jira webhook body: dispatch on `webhookEvent` (there is no event-type header)."""

    timestamp: int | float | None = None  # epoch milliseconds, a JSON number
    webhook_event: str = Field(alias="webhookEvent")
    issue_event_type_name: str | None = None
    user: User | None = None  # missing for system changes and for comment/worklog/link events
    issue: Issue | None = None
    changelog: Changelog | None = None
    comment: Comment | None = None
    worklog: Worklog | None = None
    issue_link: IssueLink | None = Field(None, alias="issueLink")
    project: dict[str, Any] | None = None
