"""Jira Cloud webhook bodies for tests, shaped after upstream-formats.md (written here)."""

from __future__ import annotations

from typing import Any


def user(account_id: str, name: str, account_type: str = "atlassian") -> dict[str, Any]:
    return {"self": f"https://example.atlassian.net/rest/api/2/user?accountId={account_id}",
            "accountId": account_id, "displayName": name, "active": True,
            "accountType": account_type, "timeZone": "UTC"}


STATUSES = {
    "To Do": ("10000", "new"),
    "In Progress": ("3", "indeterminate"),
    "Done": ("10001", "done"),
}


def issue(site: str, issue_id: str, key: str, *, summary: str = "A task",
          status: str = "To Do", assignee: dict[str, Any] | None = None,
          priority: str = "Medium", labels: tuple[str, ...] = (),
          extra_fields: dict[str, Any] | None = None) -> dict[str, Any]:
    status_id, category = STATUSES[status]
    fields = {
        "summary": summary,
        "issuetype": {"id": "10001", "name": "Task", "subtask": False},
        "project": {"id": "10000", "key": key.split("-")[0], "name": "Project"},
        "status": {"self": f"https://{site}/rest/api/2/status/{status_id}", "name": status,
                   "id": status_id, "statusCategory": {"id": 2, "key": category,
                                                       "name": status}},
        "assignee": assignee,
        "priority": {"name": priority, "id": "3"},
        "labels": list(labels),
        "duedate": None,
        "description": None,
    }
    fields.update(extra_fields or {})
    return {"id": issue_id, "self": f"https://{site}/rest/api/2/issue/{issue_id}", "key": key,
            "fields": fields}


def item(field_id: str, to_string: str | None, to: str | None = None) -> dict[str, Any]:
    return {"field": field_id, "fieldtype": "jira", "fieldId": field_id, "from": None,
            "fromString": None, "to": to, "toString": to_string}


def updated(timestamp_ms: int, author: dict[str, Any] | None, the_issue: dict[str, Any],
            changelog_id: int, items: list[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "timestamp": timestamp_ms, "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_updated", "issue": the_issue,
        "changelog": {"id": str(changelog_id), "items": items},
    }
    if author is not None:
        body["user"] = author
    return body


def created(timestamp_ms: int, author: dict[str, Any], the_issue: dict[str, Any],
            changelog_id: int) -> dict[str, Any]:
    return {"timestamp": timestamp_ms, "webhookEvent": "jira:issue_created",
            "issue_event_type_name": "issue_created", "user": author, "issue": the_issue,
            "changelog": {"id": str(changelog_id), "items": [
                item("summary", the_issue["fields"]["summary"])]}}


def deleted(timestamp_ms: int, author: dict[str, Any], the_issue: dict[str, Any]
            ) -> dict[str, Any]:
    return {"timestamp": timestamp_ms, "webhookEvent": "jira:issue_deleted", "user": author,
            "issue": the_issue}
