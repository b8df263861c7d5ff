"""Ingest of Jira webhook bodies (Cloud and Data Center) into `ChangeEvent` dicts.

The bodies below are written from upstream-formats.md sections A, B and D (shapes of real Cloud
and Data Center webhooks); they are not copies of captured files. Every `Accepted` change is
validated against the pydantic contract model `schemas.events.ChangeEvent`.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.ingest import jira_fields
from processors.ingest.logic import (
    Accepted,
    IngestConfig,
    PassedOver,
    RawRecord,
    Reference,
    Rejected,
    ingest,
)
from processors.runtime.records import dead_letter
from schemas.events import ChangeEvent, DeadLetter, ReferenceEvent

# --------------------------------------------------------------------------------------------
# Builders: realistic Jira Cloud and Data Center bodies
# --------------------------------------------------------------------------------------------

CLOUD_SITE = "acme.atlassian.net"
DC_SITE = "jira.corp.example.com"
ISSUE_ID = "10583"
ISSUE_KEY = "OPS-217"

ADA_ID = "557058:2d3e7f10-4c1a-4b8e-9f3c-5a6b7c8d9e01"
BOB_ID = "712020:8a9b0c1d-2e3f-4a5b-8c7d-6e5f4a3b2c1d"
CAROL_ID = "5b10ac8d82e05b22cc7d4ef5"
AUTOMATION_ID = "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077"

FIELD_MAP = {"customfield_10015": "start_date", "customfield_10016": "story_points"}
CONFIG = IngestConfig(field_map=FIELD_MAP)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OCCURRED = datetime(2026, 3, 2, 9, 15, 30, 123000, tzinfo=UTC)
NOW = datetime(2026, 3, 2, 9, 15, 31, 500000, tzinfo=UTC)


def epoch_ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


TS_MS = epoch_ms(OCCURRED)
_OMIT = object()


def cloud_user(account_id: str = ADA_ID, name: str = "Ada Lovelace",
               account_type: str = "atlassian") -> dict[str, Any]:
    return {
        "self": f"https://{CLOUD_SITE}/rest/api/2/user?accountId={account_id}",
        "accountId": account_id,
        "avatarUrls": {"48x48": "https://avatar-management.example/initials/AL-5.png"},
        "displayName": name,
        "active": True,
        "timeZone": "Europe/Paris",
        "accountType": account_type,
    }


def automation_user() -> dict[str, Any]:
    return cloud_user(AUTOMATION_ID, "Automation for Jira", account_type="app")


def dc_user(name: str = "jdoe", key: str = "JIRAUSER10231",
            display: str = "John Doe") -> dict[str, Any]:
    return {
        "self": f"https://{DC_SITE}/rest/api/2/user?username={name}",
        "name": name,
        "key": key,
        "emailAddress": f"{name}@corp.example.com",
        "avatarUrls": {"48x48": f"https://{DC_SITE}/secure/useravatar?avatarId=10122"},
        "displayName": display,
        "active": True,
        "timeZone": "Europe/Berlin",
    }


def status(name: str, status_id: str, category: str, category_id: int,
           site: str = CLOUD_SITE) -> dict[str, Any]:
    return {
        "self": f"https://{site}/rest/api/2/status/{status_id}",
        "description": "",
        "iconUrl": f"https://{site}/images/icons/statuses/generic.png",
        "name": name,
        "id": status_id,
        "statusCategory": {
            "self": f"https://{site}/rest/api/2/statuscategory/{category_id}",
            "id": category_id,
            "key": category,
            "colorName": {"new": "blue-gray", "indeterminate": "yellow", "done": "green"}[category],
            "name": {"new": "To Do", "indeterminate": "In Progress", "done": "Done"}[category],
        },
    }


def priority(name: str = "High", priority_id: str = "2", site: str = CLOUD_SITE) -> dict[str, Any]:
    return {"self": f"https://{site}/rest/api/2/priority/{priority_id}",
            "iconUrl": f"https://{site}/images/icons/priorities/high.svg",
            "name": name, "id": priority_id}


def cloud_fields(**overrides: Any) -> dict[str, Any]:
    """`issue.fields` of a Cloud issue (REST v2 shapes), with every known field set."""
    fields: dict[str, Any] = {
        "summary": "Rotate the on-call schedule",
        "issuetype": {"id": "10001", "name": "Task", "subtask": False},
        "project": {"self": f"https://{CLOUD_SITE}/rest/api/2/project/10000", "id": "10000",
                    "key": "OPS", "name": "Operations", "projectTypeKey": "software"},
        "status": status("In Progress", "3", "indeterminate", 4),
        "assignee": cloud_user(BOB_ID, "Bob Builder"),
        "reporter": cloud_user(),
        "creator": cloud_user(),
        "priority": priority(),
        "duedate": "2026-06-05",
        "labels": ["ops", "backend", "api"],
        "description": "h2. Context\nThe *rota* moves to weekly shifts.",
        "created": "2026-03-02T10:15:30.123+0100",
        "updated": "2026-03-02T10:15:30.123+0100",
        "customfield_10015": "2026-05-01",
        "customfield_10016": 3.0,
        "customfield_10020": None,
    }
    fields.update(overrides)
    return fields


def cloud_issue(issue_id: Any = ISSUE_ID, *, fields: dict[str, Any] | None = None,
                site: str = CLOUD_SITE, self_url: Any = _OMIT) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "id": issue_id,
        "self": f"https://{site}/rest/api/2/issue/{issue_id}",
        "key": ISSUE_KEY,
        "fields": cloud_fields() if fields is None else fields,
    }
    if self_url is None:
        del issue["self"]
    elif self_url is not _OMIT:
        issue["self"] = self_url
    return issue


def item(field: str, to_string: str | None, *, field_id: Any = _OMIT, to: Any = None,
         from_string: str | None = None, fieldtype: str = "jira", **extra: Any) -> dict[str, Any]:
    """One `changelog.items[]` entry; `field_id=_OMIT` leaves `fieldId` out (Data Center)."""
    entry: dict[str, Any] = {"field": field, "fieldtype": fieldtype, "from": None,
                             "fromString": from_string, "to": to, "toString": to_string}
    if field_id is not _OMIT:
        entry["fieldId"] = field_id
    entry.update(extra)
    return entry


def changelog(changelog_id: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {"id": changelog_id, "items": list(items)}


def body(event: str, *, issue: Any = _OMIT, user: Any = _OMIT, log: Any = None,
         event_type: str | None = None, timestamp: Any = TS_MS, **extra: Any) -> dict[str, Any]:
    """A webhook body; `user=None` leaves the actor out (system and scheduled changes)."""
    payload: dict[str, Any] = {"timestamp": timestamp, "webhookEvent": event}
    if event_type is not None:
        payload["issue_event_type_name"] = event_type
    if user is not None:
        payload["user"] = cloud_user() if user is _OMIT else user
    if issue is not _OMIT:
        payload["issue"] = issue
    else:
        payload["issue"] = cloud_issue()
    if log is not None:
        payload["changelog"] = log
    payload.update(extra)
    return payload


def created_body(**overrides: Any) -> dict[str, Any]:
    """`jira:issue_created` on Cloud: the modern changelog carries the initial values."""
    log = changelog(
        "10230",
        item("summary", "Rotate the on-call schedule", field_id="summary"),
        item("Status", "In Progress", field_id="status", to="3"),
        item("priority", "High", field_id="priority", to="2"),
        item("reporter", "Ada Lovelace", field_id="reporter", to=ADA_ID,
             tmpToAccountId=ADA_ID),
    )
    defaults: dict[str, Any] = {"event_type": "issue_created", "log": log}
    defaults.update(overrides)
    return body("jira:issue_created", **defaults)


def updated_body(*items: dict[str, Any], changelog_id: str = "10234",
                 **overrides: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {"event_type": "issue_updated",
                                "log": changelog(changelog_id, *items)}
    defaults.update(overrides)
    return body("jira:issue_updated", **defaults)


def dc_updated_body(*items: dict[str, Any]) -> dict[str, Any]:
    """A Jira Data Center update: `user` has `key`/`name`, items have no `fieldId`."""
    fields = cloud_fields(
        project={"self": f"https://{DC_SITE}/rest/api/2/project/10100", "id": "10100",
                 "key": "OPS", "name": "Operations"},
        status=status("Done", "10001", "done", 3, site=DC_SITE),
        assignee=dc_user("mmax", "JIRAUSER10307", "Max Mustermann"),
        reporter=dc_user(),
        priority=priority(site=DC_SITE),
    )
    return body("jira:issue_updated", user=dc_user(), event_type="issue_generic",
                issue=cloud_issue(fields=fields, site=DC_SITE),
                log=changelog("20411", *items))


def record(value: dict[str, Any] | bytes | None, *, offset: int = 7,
           key: bytes | None = ISSUE_KEY.encode(),
           headers: dict[str, bytes | None] | None = None) -> RawRecord:
    raw = value if isinstance(value, bytes | None) else json.dumps(value).encode()
    return RawRecord(topic="jira.events", partition=0, offset=offset, key=key, value=raw,
                     headers=headers or {})


def accept(value: dict[str, Any] | bytes, config: IngestConfig = CONFIG,
           **record_args: Any) -> dict[str, Any]:
    """Ingest and expect an `Accepted` whose change satisfies the ChangeEvent contract."""
    result = ingest(record(value, **record_args), config)
    assert isinstance(result, Accepted), result
    ChangeEvent.model_validate(result.change)
    assert result.task_id == result.change["task_id"]
    return result.change


def reject(value: dict[str, Any] | bytes | None, config: IngestConfig = CONFIG,
           **record_args: Any) -> Rejected:
    result = ingest(record(value, **record_args), config)
    assert isinstance(result, Rejected), result
    return result


TASK_ID = f"jira:{CLOUD_SITE}:{ISSUE_ID}"


# --------------------------------------------------------------------------------------------
# jira:issue_created
# --------------------------------------------------------------------------------------------

def test_created_is_a_created_change_of_the_issue() -> None:
    change = accept(created_body())
    assert change["kind"] == "created"
    assert change["task_id"] == TASK_ID
    assert change["source"] == "jira"
    assert change["source_key"] == ISSUE_KEY
    assert change["project"] == "OPS"
    assert change["upstream_event"] == "jira:issue_created"
    assert change["origin"] == {"topic": "jira.events", "partition": 0, "offset": 7}


def test_created_occurred_at_is_the_body_timestamp_in_utc_milliseconds() -> None:
    change = accept(created_body())
    assert change["occurred_at"] == "2026-03-02T09:15:30.123Z"
    assert ChangeEvent.model_validate(change).occurred_at == OCCURRED


def test_created_carries_every_known_field_normalized() -> None:
    """Contract §5: a created event holds every known field, in normalized names."""
    changes = accept(created_body())["changes"]
    assert changes == {
        "summary": "Rotate the on-call schedule",
        "status": "In Progress",
        "status_category": "indeterminate",
        "assignee": BOB_ID,
        "priority": "High",
        "due_date": "2026-06-05",
        "labels": ["api", "backend", "ops"],
        "description": "h2. Context\nThe *rota* moves to weekly shifts.",
        "start_date": "2026-05-01",
        "story_points": 3.0,
    }


def test_created_labels_are_sorted() -> None:
    fields = cloud_fields(labels=["zeta", "alpha", "mid"])
    changes = accept(created_body(issue=cloud_issue(fields=fields)))["changes"]
    assert changes["labels"] == ["alpha", "mid", "zeta"]


def test_created_unassigned_issue_has_a_null_assignee() -> None:
    fields = cloud_fields(assignee=None, duedate=None)
    changes = accept(created_body(issue=cloud_issue(fields=fields)))["changes"]
    assert changes["assignee"] is None
    assert changes["due_date"] is None


@pytest.mark.parametrize(("raw", "expected"), [(3.0, 3.0), (12, 12), ("5", 5), ("2.5", 2.5)])
def test_story_points_custom_field_is_a_number(raw: Any, expected: float) -> None:
    """customfield_10016 is mapped to story_points by the field map, numbers or numeric text."""
    fields = cloud_fields(customfield_10016=raw)
    changes = accept(created_body(issue=cloud_issue(fields=fields)))["changes"]
    assert changes["story_points"] == expected
    assert not isinstance(changes["story_points"], bool | str)


def test_custom_fields_are_not_mapped_without_a_field_map() -> None:
    changes = accept(created_body(), IngestConfig())["changes"]
    assert "start_date" not in changes
    assert "story_points" not in changes
    assert not any(name.startswith("customfield_") for name in changes)


def test_accepted_change_is_always_serializable_by_orjson() -> None:
    """An Accepted change is "a dict ready for orjson" (outcomes.py); the stage dumps it."""
    fields = cloud_fields(customfield_10016="1e25")
    change = accept(created_body(issue=cloud_issue(fields=fields)))
    orjson.dumps(change)


# --------------------------------------------------------------------------------------------
# jira:issue_updated
# --------------------------------------------------------------------------------------------

def test_status_change_gives_status_and_status_category() -> None:
    fields = cloud_fields(status=status("Done", "10001", "done", 3))
    change = accept(updated_body(
        item("resolution", "Done", field_id="resolution", to="10000"),
        item("status", "Done", field_id="status", from_string="In Progress", to="10001"),
        event_type="issue_generic", issue=cloud_issue(fields=fields)))
    assert change["kind"] == "updated"
    assert change["changes"] == {"status": "Done", "status_category": "done"}


def test_assignee_change_gives_the_account_id() -> None:
    fields = cloud_fields(assignee=cloud_user(CAROL_ID, "Carol Danvers"))
    change = accept(updated_body(
        item("assignee", "Carol Danvers", field_id="assignee", to=CAROL_ID,
             tmpFromAccountId=BOB_ID, tmpToAccountId=CAROL_ID),
        event_type="issue_assigned", issue=cloud_issue(fields=fields)))
    assert change["changes"] == {"assignee": CAROL_ID}


def test_unassign_gives_a_null_assignee() -> None:
    fields = cloud_fields(assignee=None)
    change = accept(updated_body(
        item("assignee", None, field_id="assignee", from_string="Bob Builder",
             tmpFromAccountId=BOB_ID, tmpToAccountId=None),
        event_type="issue_assigned", issue=cloud_issue(fields=fields)))
    assert change["changes"] == {"assignee": None}


def test_summary_change_gives_the_new_summary() -> None:
    fields = cloud_fields(summary="Rotate the on-call schedule weekly")
    change = accept(updated_body(
        item("summary", "Rotate the on-call schedule weekly", field_id="summary",
             from_string="Rotate the on-call schedule"),
        issue=cloud_issue(fields=fields)))
    assert change["changes"] == {"summary": "Rotate the on-call schedule weekly"}


@pytest.mark.parametrize("event_type", ["issue_updated", "issue_generic", "issue_assigned",
                                        "issue_moved", "custom_event_10100", None])
def test_update_does_not_depend_on_issue_event_type_name(event_type: str | None) -> None:
    """The event type name is open (admins add events) and absent on old versions."""
    change = accept(updated_body(item("priority", "High", field_id="priority", to="2"),
                                 event_type=event_type))
    assert change["kind"] == "updated"
    assert change["changes"] == {"priority": "High"}


def test_story_points_change_uses_the_field_map() -> None:
    fields = cloud_fields(customfield_10016=8)
    change = accept(updated_body(
        item("Story point estimate", "8", field_id="customfield_10016", fieldtype="custom"),
        issue=cloud_issue(fields=fields)))
    assert change["changes"] == {"story_points": 8}


def test_changelog_value_is_used_when_the_snapshot_lacks_the_field() -> None:
    """A number custom field logged with from/to null and the value in toString."""
    fields = cloud_fields()
    del fields["customfield_10016"]
    change = accept(updated_body(
        item("Story point estimate", "12", field_id="customfield_10016", fieldtype="custom"),
        issue=cloud_issue(fields=fields)))
    assert change["changes"] == {"story_points": 12}


def test_several_items_in_one_changelog_give_several_fields() -> None:
    change = accept(updated_body(
        item("summary", "Rotate the on-call schedule", field_id="summary"),
        item("labels", "api backend ops", field_id="labels"),
        item("duedate", "2026-06-05 00:00:00.0", field_id="duedate", to="2026-06-05")))
    assert change["changes"] == {"summary": "Rotate the on-call schedule",
                                 "labels": ["api", "backend", "ops"],
                                 "due_date": "2026-06-05"}


def test_comment_update_without_changelog_is_activity_without_changes() -> None:
    payload = body("jira:issue_updated", event_type="issue_commented", comment={
        "self": f"https://{CLOUD_SITE}/rest/api/2/issue/{ISSUE_ID}/comment/10050",
        "id": "10050", "author": cloud_user(), "body": "Rota draft attached.",
        "updateAuthor": cloud_user(), "created": "2026-03-02T10:15:30.123+0100",
        "updated": "2026-03-02T10:15:30.123+0100", "jsdPublic": True})
    change = accept(payload)
    assert change["kind"] == "activity"
    assert change["changes"] == {}
    assert change["tiebreak"] == ""


def test_update_with_empty_changelog_items_is_activity() -> None:
    """Automation/API assignments may log `items: []`."""
    change = accept(updated_body(event_type="issue_assigned"))
    assert change["kind"] == "activity"
    assert change["changes"] == {}


def test_update_of_unknown_fields_only_is_activity() -> None:
    change = accept(updated_body(item("Rank", "Ranked higher", fieldtype="custom",
                                      field_id="customfield_10019")))
    assert change["kind"] == "activity"
    assert change["changes"] == {}


# --------------------------------------------------------------------------------------------
# jira:issue_deleted
# --------------------------------------------------------------------------------------------

def test_deleted_is_a_deleted_change_without_fields() -> None:
    """The 2019 Cloud capture has no changelog and no issue_event_type_name."""
    change = accept(body("jira:issue_deleted"))
    assert change["kind"] == "deleted"
    assert change["changes"] == {}
    assert change["task_id"] == TASK_ID


# --------------------------------------------------------------------------------------------
# Jira Data Center
# --------------------------------------------------------------------------------------------

def test_data_center_author_is_identified_by_user_key() -> None:
    change = accept(dc_updated_body(item("status", "Done", to="10001")))
    assert change["author"] == {"kind": "user", "id": "JIRAUSER10231", "name": "John Doe",
                                "source": "jira"}


def test_data_center_items_without_field_id_fall_back_on_field() -> None:
    change = accept(dc_updated_body(
        item("status", "Done", from_string="In Progress", to="10001"),
        item("assignee", "Max Mustermann", to="JIRAUSER10307"),
        item("Due Date", "2026-06-05 00:00:00.0", to="2026-06-05")))
    assert change["changes"] == {"status": "Done", "status_category": "done",
                                 "assignee": "JIRAUSER10307", "due_date": "2026-06-05"}
    assert change["task_id"] == f"jira:{DC_SITE}:{ISSUE_ID}"


def test_localized_field_without_field_id_is_ignored() -> None:
    """`field` is a display name and may be localized: it is not guessed."""
    change = accept(updated_body(item("Статус", "В работе", to="3")))
    assert change["kind"] == "activity"
    assert change["changes"] == {}


def test_localized_field_with_field_id_is_matched_on_field_id() -> None:
    change = accept(updated_body(item("Статус", "В работе", field_id="status", to="3")))
    assert change["changes"] == {"status": "In Progress", "status_category": "indeterminate"}


# --------------------------------------------------------------------------------------------
# Authors
# --------------------------------------------------------------------------------------------

def test_cloud_author_is_identified_by_account_id() -> None:
    change = accept(updated_body(item("summary", "x", field_id="summary")))
    assert change["author"] == {"kind": "user", "id": ADA_ID, "name": "Ada Lovelace",
                                "source": "jira"}


def test_pre_2019_cloud_user_with_name_and_key_uses_account_id() -> None:
    user = {**cloud_user(), "name": "ada", "key": "ada"}
    change = accept(updated_body(item("summary", "x", field_id="summary"), user=user))
    assert change["author"]["id"] == ADA_ID


def test_missing_user_gives_the_technical_author() -> None:
    change = accept(updated_body(item("summary", "x", field_id="summary"), user=None))
    assert change["author"] == {"kind": "technical", "id": None, "name": None,
                                "source": "jira"}


def test_automation_for_jira_is_a_technical_author() -> None:
    change = accept(updated_body(item("summary", "x", field_id="summary"),
                                 user=automation_user()))
    assert change["author"]["kind"] == "technical"
    assert change["author"]["source"] == "jira"


BOXSYNC_APP_ID = "712020:0b0c5e1a-7d2f-4c3b-9a8e-1f2d3c4b5a69"
ECHO_CONFIG = IngestConfig(field_map=FIELD_MAP, integration_account_id=BOXSYNC_APP_ID)


def test_a_change_by_boxsyncs_own_app_account_is_a_likely_echo() -> None:
    change = accept(updated_body(item("summary", "x", field_id="summary"),
                                 user=cloud_user(BOXSYNC_APP_ID, "boxsync", account_type="app")),
                    ECHO_CONFIG)
    assert change["likely_echo"] is True
    assert ChangeEvent.model_validate(change).likely_echo is True


@pytest.mark.parametrize(("author", "config"), [
    (cloud_user(BOXSYNC_APP_ID, "boxsync", account_type="app"), CONFIG),  # not configured
    (automation_user(), ECHO_CONFIG),  # another app
    (cloud_user(BOXSYNC_APP_ID, "a person?"), ECHO_CONFIG),  # not an app account
    (None, ECHO_CONFIG),  # nobody named
])
def test_other_authors_are_no_echo(author: dict[str, Any] | None, config: IngestConfig) -> None:
    change = accept(updated_body(item("summary", "x", field_id="summary"), user=author), config)
    assert "likely_echo" not in change
    assert ChangeEvent.model_validate(change).likely_echo is False


# --------------------------------------------------------------------------------------------
# Identity: task id and site
# --------------------------------------------------------------------------------------------

def test_task_id_is_site_host_and_issue_id() -> None:
    assert accept(created_body())["task_id"] == "jira:acme.atlassian.net:10583"


def test_task_id_survives_the_create_self_url_without_issue_segment() -> None:
    """On create, issue.self was seen as `.../rest/api/2/10411`: only its host is used."""
    issue = cloud_issue(self_url=f"https://{CLOUD_SITE}/rest/api/2/{ISSUE_ID}")
    assert accept(created_body(issue=issue))["task_id"] == TASK_ID


def test_same_issue_id_on_cloud_and_data_center_gives_different_tasks() -> None:
    cloud = accept(updated_body(item("status", "Done", field_id="status")))
    dc = accept(dc_updated_body(item("status", "Done")))
    assert cloud["task_id"] == f"jira:{CLOUD_SITE}:{ISSUE_ID}"
    assert dc["task_id"] == f"jira:{DC_SITE}:{ISSUE_ID}"
    assert cloud["task_id"] != dc["task_id"]


def test_issue_id_as_a_number_gives_the_same_task_and_event_id() -> None:
    as_text = accept(created_body(issue=cloud_issue(ISSUE_ID)))
    as_number = accept(created_body(issue=cloud_issue(int(ISSUE_ID))))
    assert as_number["task_id"] == as_text["task_id"] == TASK_ID
    assert as_number["event_id"] == as_text["event_id"]


def test_site_from_header_when_issue_self_is_missing() -> None:
    change = accept(created_body(issue=cloud_issue(self_url=None)),
                    headers={"x-jira-site": CLOUD_SITE.encode()})
    assert change["task_id"] == TASK_ID


def test_site_from_config_default_when_no_self_and_no_header() -> None:
    config = IngestConfig(field_map=FIELD_MAP, default_jira_site=DC_SITE)
    change = accept(created_body(issue=cloud_issue(self_url=None)), config)
    assert change["task_id"] == f"jira:{DC_SITE}:{ISSUE_ID}"


def test_header_site_wins_over_config_default() -> None:
    config = IngestConfig(field_map=FIELD_MAP, default_jira_site=DC_SITE)
    change = accept(created_body(issue=cloud_issue(self_url=None)), config,
                    headers={"x-jira-site": CLOUD_SITE.encode()})
    assert change["task_id"] == TASK_ID


def test_issue_self_wins_over_header_and_default() -> None:
    config = IngestConfig(field_map=FIELD_MAP, default_jira_site="other.example.com")
    change = accept(created_body(), config, headers={"x-jira-site": b"third.example.com"})
    assert change["task_id"] == TASK_ID


def test_site_from_header_is_normalized_like_the_host_of_self() -> None:
    """A host is case-insensitive: the same issue must keep one task id (contract §2)."""
    from_self = accept(created_body(issue=cloud_issue(
        self_url=f"https://ACME.atlassian.net/rest/api/2/issue/{ISSUE_ID}")))
    from_header = accept(created_body(issue=cloud_issue(self_url=None)),
                         headers={"x-jira-site": b"ACME.atlassian.net"})
    assert from_self["task_id"] == TASK_ID
    assert from_header["task_id"] == from_self["task_id"]


def test_malformed_issue_self_does_not_raise() -> None:
    issue = cloud_issue(self_url=f"https://[{CLOUD_SITE}/rest/api/2/issue/{ISSUE_ID}")
    result = ingest(record(created_body(issue=issue)), CONFIG)
    assert isinstance(result, Accepted | Reference | PassedOver | Rejected)


# --------------------------------------------------------------------------------------------
# event_id and tiebreak
# --------------------------------------------------------------------------------------------

def test_event_id_is_the_webhook_identifier_header_when_present() -> None:
    change = accept(created_body(),
                    headers={"x-atlassian-webhook-identifier": b"7c1c5d1e-2b3a-4f5e-9d8c"})
    assert change["event_id"] == "7c1c5d1e-2b3a-4f5e-9d8c"


def test_event_id_without_header_is_the_same_for_the_same_body() -> None:
    """A retry re-delivers the same body at another offset: it must dedupe."""
    first = accept(created_body(), offset=7)
    retry = accept(created_body(), offset=4096)
    assert first["event_id"] == retry["event_id"]
    assert first["event_id"]


def test_event_id_without_header_is_the_hash_the_contract_names() -> None:
    """site|event|issue id|timestamp|changelog id, sha256, 32 hex digits: ids stay stable
    across versions, so a replay after an upgrade still dedupes against the stored ones."""
    import hashlib
    change = accept(updated_body(item("summary", "x", field_id="summary"),
                                 changelog_id="10234"))
    text = f"{CLOUD_SITE}|jira:issue_updated|{ISSUE_ID}|{TS_MS}|10234"
    assert change["event_id"] == hashlib.sha256(text.encode()).hexdigest()[:32]


def test_event_id_without_header_or_changelog_id_hashes_an_empty_part() -> None:
    import hashlib
    change = accept(body("jira:issue_deleted", event_type="issue_deleted", log=None))
    text = f"{CLOUD_SITE}|jira:issue_deleted|{ISSUE_ID}|{TS_MS}|"
    assert change["event_id"] == hashlib.sha256(text.encode()).hexdigest()[:32]


def test_event_id_without_header_differs_for_another_timestamp() -> None:
    first = accept(created_body())
    later = accept(created_body(timestamp=TS_MS + 1))
    assert first["event_id"] != later["event_id"]


def test_event_id_without_header_differs_for_another_changelog() -> None:
    first = accept(updated_body(item("summary", "x", field_id="summary"), changelog_id="10234"))
    other = accept(updated_body(item("summary", "x", field_id="summary"), changelog_id="10235"))
    assert first["event_id"] != other["event_id"]


def test_event_id_without_header_differs_between_sites() -> None:
    cloud = accept(updated_body(item("status", "Done", field_id="status"),
                                changelog_id="20411", event_type="issue_generic"))
    dc = accept(dc_updated_body(item("status", "Done")))
    assert cloud["event_id"] != dc["event_id"]


def test_tiebreak_is_the_changelog_id_zero_padded() -> None:
    change = accept(updated_body(item("summary", "x", field_id="summary"), changelog_id="10234"))
    assert change["tiebreak"] == "00000000000000010234"


def test_zero_padded_tiebreak_sorts_numerically() -> None:
    small = accept(updated_body(item("summary", "x", field_id="summary"), changelog_id="999"))
    large = accept(updated_body(item("summary", "x", field_id="summary"), changelog_id="10000"))
    assert small["tiebreak"] < large["tiebreak"]


# --------------------------------------------------------------------------------------------
# Text cleaning
# --------------------------------------------------------------------------------------------

def test_nul_and_control_characters_are_removed_and_the_event_flows() -> None:
    fields = cloud_fields(summary="Rotate\x00 the\x07 on-call\x1b schedule",
                          description="line one\nline\ttwo\x00")
    change = accept(created_body(issue=cloud_issue(fields=fields)))
    assert change["changes"]["summary"] == "Rotate the on-call schedule"
    assert change["changes"]["description"] == "line one\nline\ttwo"
    assert b"\\u0000" not in orjson.dumps(change)


def test_control_characters_in_author_name_are_removed() -> None:
    user = cloud_user(name="Ada\x00 Lovelace")
    change = accept(updated_body(item("summary", "x", field_id="summary"), user=user))
    assert change["author"]["name"] == "Ada Lovelace"


# --------------------------------------------------------------------------------------------
# Passed over
# --------------------------------------------------------------------------------------------

PROJECT_CREATED = {
    "timestamp": TS_MS,
    "webhookEvent": "project_created",
    "project": {"self": f"https://{CLOUD_SITE}/rest/api/2/project/10200", "id": 10200,
                "key": "FIN", "name": "Finance",
                "projectLead": cloud_user(), "assigneeType": "unassigned"},
}

JIRA_VERSION_RELEASED = {
    "timestamp": TS_MS,
    "webhookEvent": "jira:version_released",
    "version": {"self": f"https://{CLOUD_SITE}/rest/api/2/version/10300", "id": "10300",
                "name": "2026.03", "archived": False, "released": True, "projectId": 10000},
}


@pytest.mark.parametrize("payload", [PROJECT_CREATED, JIRA_VERSION_RELEASED],
                         ids=["project_created", "jira:version_released"])
def test_project_and_version_events_become_reference_events(payload: dict[str, Any]) -> None:
    result = ingest(record(payload), CONFIG)
    assert isinstance(result, Reference), result
    event_body = ReferenceEvent.model_validate(result.event_body)
    assert event_body.upstream_event == payload["webhookEvent"]
    assert event_body.site == CLOUD_SITE


@pytest.mark.parametrize("event", ["user_created", "attachment_created", "filter_updated"])
def test_events_boxsync_does_not_act_on_are_passed_over(event: str) -> None:
    result = ingest(record({"timestamp": TS_MS, "webhookEvent": event}), CONFIG)
    assert isinstance(result, PassedOver)
    assert (result.reason, result.event) == ("unhandled_event", event)


def test_other_topics_are_passed_over() -> None:
    raw = RawRecord(topic="sync.commands", partition=0, offset=1, key=None,
                    value=b'{"type": "open_box"}')
    assert isinstance(ingest(raw, CONFIG), PassedOver)


# Behaviour.md, "Partial sync": comment, worklog and issue-link events count as activity or
# as field changes of the issue.

COMMENT_CREATED: dict[str, Any] = {
    "timestamp": TS_MS,
    "webhookEvent": "comment_created",
    "comment": {
        "self": f"https://{CLOUD_SITE}/rest/api/2/issue/{ISSUE_ID}/comment/10050",
        "id": "10050", "author": cloud_user(BOB_ID, "Bob Builder"), "body": "Looks good.",
        "updateAuthor": cloud_user(BOB_ID, "Bob Builder"),
        "created": "2026-03-02T10:15:30.123+0100", "updated": "2026-03-02T10:15:30.123+0100",
        "jsdPublic": True,
    },
    "issue": {
        "id": ISSUE_ID, "self": f"https://{CLOUD_SITE}/rest/api/2/issue/{ISSUE_ID}",
        "key": ISSUE_KEY,
        "fields": {k: cloud_fields()[k] for k in ("summary", "issuetype", "project",
                                                   "assignee", "priority", "status")},
    },
}

WORKLOG_CREATED: dict[str, Any] = {
    "timestamp": TS_MS,
    "webhookEvent": "worklog_created",
    "worklog": {
        "self": f"https://{CLOUD_SITE}/rest/api/2/issue/{ISSUE_ID}/worklog/10200",
        "author": cloud_user(CAROL_ID, "Carol Danvers"),
        "updateAuthor": cloud_user(CAROL_ID, "Carol Danvers"), "comment": "",
        "created": "2026-03-02T10:15:30.123+0100", "updated": "2026-03-02T10:15:30.123+0100",
        "started": "2026-03-02T09:00:00.000+0100", "timeSpent": "1h",
        "timeSpentSeconds": 3600, "id": "10200", "issueId": ISSUE_ID,
    },
}


def test_comment_created_is_activity_of_the_issue_by_the_comment_author() -> None:
    change = accept(COMMENT_CREATED)
    assert change["task_id"] == TASK_ID
    assert change["kind"] in ("activity", "updated")
    assert change["author"]["id"] == BOB_ID


def test_worklog_created_is_activity_of_the_issue_by_the_worklog_author() -> None:
    change = accept(WORKLOG_CREATED)
    assert change["task_id"] == TASK_ID
    assert change["kind"] in ("activity", "updated")
    assert change["author"]["id"] == CAROL_ID


def test_comment_updated_is_authored_by_the_comment_updater() -> None:
    body = {**COMMENT_CREATED, "webhookEvent": "comment_updated",
            "comment": {**COMMENT_CREATED["comment"],
                        "updateAuthor": cloud_user(CAROL_ID, "Carol Danvers")}}
    change = accept(body)
    assert change["author"]["id"] == CAROL_ID and change["changes"] == {}


def test_worklog_with_a_numeric_issue_id_and_no_issue_key() -> None:
    body = {**WORKLOG_CREATED, "worklog": {**WORKLOG_CREATED["worklog"], "issueId": 10583}}
    change = accept(body)
    assert change["task_id"] == f"jira:{CLOUD_SITE}:10583"
    assert change["source_key"] is None


ISSUELINK_CREATED = {
    "timestamp": TS_MS,
    "webhookEvent": "issuelink_created",
    "issueLink": {"id": 10301, "sourceIssueId": 10583, "destinationIssueId": 10584,
                  "issueLinkType": {"id": 10003, "name": "Relates", "outwardName": "relates to",
                                    "inwardName": "relates to", "isSubTaskLinkType": False,
                                    "isSystemLinkType": False},
                  "systemLink": False},
}


def test_issuelink_takes_its_site_from_the_header() -> None:
    change = accept(ISSUELINK_CREATED, headers={"x-jira-site": CLOUD_SITE.encode()})
    assert change["task_id"] == f"jira:{CLOUD_SITE}:10583"
    assert change["kind"] == "activity" and change["author"]["kind"] == "technical"


def test_issuelink_without_any_site_is_dead_lettered() -> None:
    result = ingest(record(ISSUELINK_CREATED), CONFIG)
    assert isinstance(result, Rejected) and result.reason == "unknown_site"


@pytest.mark.parametrize("event", ["project_deleted", "project_archived", "project_soft_deleted",
                                   "project_restored_archived"])
def test_project_events_are_passed_on_as_reference_events(event: str) -> None:
    """For the box filters: a deleted or archived project corrupts the scopes naming it."""
    result = ingest(record({"timestamp": TS_MS, "webhookEvent": event, "project": {
        "self": f"https://{CLOUD_SITE}/rest/api/2/project/10000", "id": 10000, "key": "OPS",
        "name": "Operations", "projectLead": {"accountId": BOB_ID}}}), CONFIG)
    assert isinstance(result, Reference), result
    assert result.key == f"project:{CLOUD_SITE}:10000"
    event_body = ReferenceEvent.model_validate(result.event_body)
    assert (event_body.entity, event_body.entity_id, event_body.project) == (
        "project", "10000", "OPS")
    assert event_body.site == CLOUD_SITE and event_body.upstream_event == event
    assert event_body.data == {"key": "OPS", "name": "Operations"}


@pytest.mark.parametrize(("event", "entity", "subject"), [
    ("jira:version_released", "version",
     {"id": "10010", "name": "1.2", "projectId": 10000, "released": True}),
    ("sprint_started", "sprint", {"id": 5, "name": "Sprint 5", "state": "active",
                                  "originBoardId": 3}),
    ("board_created", "board", {"id": 3, "name": "OPS board"}),
])
def test_version_sprint_and_board_events_are_reference_events(
        event: str, entity: str, subject: dict[str, Any]) -> None:
    result = ingest(record({"timestamp": TS_MS, "webhookEvent": event, entity: subject},
                           headers={"x-jira-site": CLOUD_SITE.encode()}), CONFIG)
    assert isinstance(result, Reference), result
    assert ReferenceEvent.model_validate(result.event_body).entity == entity


def test_a_reference_event_without_its_object_is_dead_lettered() -> None:
    result = ingest(record({"timestamp": TS_MS, "webhookEvent": "project_deleted"}), CONFIG)
    assert isinstance(result, Rejected) and result.reason == "missing_project"


# --------------------------------------------------------------------------------------------
# Rejections → dead letters
# --------------------------------------------------------------------------------------------

def _without_issue_id() -> dict[str, Any]:
    issue = cloud_issue()
    del issue["id"]
    return created_body(issue=issue)


REJECTIONS: list[tuple[str, Any, str, IngestConfig]] = [
    ("invalid-json", b'{"webhookEvent": "jira:issue_created", "issue": ', "invalid_json",
     CONFIG),
    ("invalid-utf8", b'{"webhookEvent": "\xff\xfe"}', "invalid_json", CONFIG),
    ("json-array", b'[{"webhookEvent": "jira:issue_created"}]', "not_an_object", CONFIG),
    ("json-string", b'"jira:issue_created"', "not_an_object", CONFIG),
    ("empty-body", b"", "empty_body", CONFIG),
    ("blank-body", b" \n\t ", "empty_body", CONFIG),
    ("null-value", None, "empty_body", CONFIG),
    ("too-large", json.dumps(created_body(issue=cloud_issue(fields=cloud_fields(
        description="x" * 2048)))).encode(), "too_large", IngestConfig(max_event_bytes=1024)),
    ("no-webhook-event", json.dumps({"timestamp": TS_MS, "issue": cloud_issue()}).encode(),
     "missing_event", CONFIG),
    ("no-issue", json.dumps(body("jira:issue_updated", issue=None)).encode(), "missing_issue",
     CONFIG),
    ("no-issue-id", json.dumps(_without_issue_id()).encode(), "missing_issue_id", CONFIG),
    ("empty-issue-id", json.dumps(created_body(issue=cloud_issue(""))).encode(),
     "missing_issue_id", CONFIG),
    ("bool-issue-id", json.dumps(created_body(issue=cloud_issue(True))).encode(),
     "missing_issue_id", CONFIG),
    ("timestamp-string", json.dumps(created_body(timestamp=str(TS_MS))).encode(),
     "invalid_timestamp", CONFIG),
    ("timestamp-iso", json.dumps(created_body(timestamp="2026-03-02T09:15:30.123Z")).encode(),
     "invalid_timestamp", CONFIG),
    ("timestamp-bool", json.dumps(created_body(timestamp=True)).encode(), "invalid_timestamp",
     CONFIG),
    ("timestamp-null", json.dumps(created_body(timestamp=None)).encode(), "invalid_timestamp",
     CONFIG),
    ("timestamp-absurd", json.dumps(created_body(timestamp=10**18)).encode(),
     "invalid_timestamp", CONFIG),
    ("timestamp-negative", json.dumps(created_body(timestamp=-1)).encode(),
     "invalid_timestamp", CONFIG),
    ("timestamp-seconds", json.dumps(created_body(timestamp=TS_MS // 1000)).encode(),
     "invalid_timestamp", CONFIG),
    ("no-site", json.dumps(created_body(issue=cloud_issue(self_url=None))).encode(),
     "unknown_site", CONFIG),
    ("self-not-a-url", json.dumps(created_body(issue=cloud_issue(self_url="10583"))).encode(),
     "unknown_site", CONFIG),
]


@pytest.mark.parametrize(("value", "reason", "config"),
                         [case[1:] for case in REJECTIONS], ids=[case[0] for case in REJECTIONS])
def test_broken_records_are_rejected_with_a_reason(value: bytes | None, reason: str,
                                                   config: IngestConfig) -> None:
    rejected = reject(value, config)
    assert rejected.reason == reason
    assert rejected.message


def test_body_of_exactly_max_event_bytes_is_accepted() -> None:
    raw = json.dumps(created_body()).encode()
    accept(raw, IngestConfig(max_event_bytes=len(raw), field_map=FIELD_MAP))
    assert reject(raw, IngestConfig(max_event_bytes=len(raw) - 1)).reason == "too_large"


@pytest.mark.parametrize(("value", "reason", "config"),
                         [case[1:] for case in REJECTIONS], ids=[case[0] for case in REJECTIONS])
def test_every_rejection_makes_a_valid_dead_letter(value: bytes | None, reason: str,
                                                   config: IngestConfig) -> None:
    raw = record(value, offset=42, key=b"OPS-217",
                 headers={"x-atlassian-webhook-identifier": b"delivery-1",
                          "x-atlassian-webhook-retry": None})
    rejected = ingest(raw, config)
    assert isinstance(rejected, Rejected)
    letter = DeadLetter.model_validate(dead_letter(raw, rejected, "ingest", NOW))
    assert letter.error.type == reason
    assert letter.source_topic == "jira.events"
    assert (letter.partition, letter.offset, letter.key) == (0, 42, "OPS-217")
    assert letter.processor == "ingest"
    assert letter.at == NOW
    assert letter.headers == {"x-atlassian-webhook-identifier": "delivery-1",
                              "x-atlassian-webhook-retry": None}
    if value is None:
        assert letter.value is None
    else:
        assert base64.b64decode(letter.value or "") == value


def test_dead_letter_keeps_the_original_bytes_exactly() -> None:
    original = b'{"webhookEvent": "jira:issue_updated", "timestamp": "soon", \xff}'
    raw = record(original, key=None)
    rejected = ingest(raw, CONFIG)
    assert isinstance(rejected, Rejected)
    letter = dead_letter(raw, rejected, "ingest", NOW)
    assert base64.b64decode(letter["value"]) == original
    assert letter["key"] is None
    assert letter["at"] == "2026-03-02T09:15:31.500Z"
    DeadLetter.model_validate(letter)


# --------------------------------------------------------------------------------------------
# Property: ingest never raises
# --------------------------------------------------------------------------------------------

_json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
                 | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8)
# Text without ':' never looks like a URL (the malformed-URL crash has its own test above).
_not_urls = st.text(alphabet=st.characters(blacklist_characters=":"), max_size=12)
_selfs = (st.sampled_from([f"https://{CLOUD_SITE}/rest/api/2/issue/{ISSUE_ID}",
                           f"http://{DC_SITE}:8080/jira/rest/api/2/issue/1",
                           "https://[::1]/rest/api/2/issue/1", "file:///etc/passwd"])
          | _not_urls | _json_values.filter(lambda value: not isinstance(value, str)))
_fields = st.dictionaries(
    st.sampled_from(["summary", "status", "assignee", "priority", "duedate", "labels",
                     "parent", "issuelinks", "description", "project",
                     "customfield_10015", "customfield_10016"]),
    _json_values | st.fixed_dictionaries({}, optional={
        "name": _json_values, "key": _json_values, "accountId": _json_values,
        "statusCategory": _json_values | st.fixed_dictionaries({"key": _json_values})}),
    max_size=8)
_field_names = st.sampled_from(["status", "Status", "Статус", "assignee", "labels", "duedate",
                                "Due Date", "summary", "Link", "IssueParentAssociation"])
_field_ids = st.sampled_from(["status", "summary", "assignee", "customfield_10015",
                              "customfield_10016", "labels", "duedate", "description"])
_items = st.lists(_json_values | st.fixed_dictionaries({}, optional={
    "field": _field_names | _json_values,
    "fieldId": _field_ids | _json_values,
    "to": _json_values, "toString": _json_values, "tmpToAccountId": _json_values}),
    max_size=4)
_users = _json_values | st.fixed_dictionaries({}, optional={
    "accountId": st.text(max_size=8) | _json_values, "key": _json_values, "name": _json_values,
    "displayName": st.text(max_size=8) | _json_values,
    "accountType": st.sampled_from(["atlassian", "app", "customer"]) | _json_values})
_changelogs = _json_values | st.fixed_dictionaries({}, optional={
    "id": st.from_regex(r"\A[0-9]{1,8}\Z") | _json_values, "items": _items | _json_values})
_timestamps = st.integers(min_value=946_684_800_000, max_value=4_102_444_800_000)
_issue_events = st.sampled_from(["jira:issue_created", "jira:issue_updated",
                                 "jira:issue_deleted"])
# Loose bodies: any key may be missing or of any JSON type.
_loose_bodies = st.fixed_dictionaries(
    {"webhookEvent": _issue_events | st.just("comment_created") | _json_values},
    optional={
        "timestamp": _timestamps | _json_values,
        "issue": _json_values | st.fixed_dictionaries({}, optional={
            "id": st.text(max_size=6) | st.integers() | _json_values,
            "self": _selfs, "key": _json_values, "fields": _fields | _json_values}),
        "user": _users,
        "changelog": _changelogs,
    })
# Plausible bodies: the envelope is right, so the messy parts reach the normalization.
_plausible_bodies = st.fixed_dictionaries(
    {"webhookEvent": _issue_events, "timestamp": _timestamps,
     "issue": st.fixed_dictionaries(
         {"id": st.text(min_size=1, max_size=6) | st.integers(min_value=0),
          "self": _selfs, "fields": _fields},
         optional={"key": st.text(max_size=10) | _json_values})},
    optional={"user": _users, "issue_event_type_name": st.text(max_size=10) | _json_values,
              "changelog": st.fixed_dictionaries(
                  {"id": st.from_regex(r"\A[0-9]{1,8}\Z") | _json_values,
                   "items": st.lists(st.fixed_dictionaries(
                       {"field": _field_names}, optional={
                           "fieldId": _field_ids, "to": _json_values,
                           "toString": st.text(max_size=8) | _json_values,
                           "tmpToAccountId": _json_values}), max_size=4)})})
_any_bytes = (st.binary(max_size=256)
              | _json_values.map(lambda value: json.dumps(value).encode())
              | _loose_bodies.map(lambda value: json.dumps(value).encode())
              | _plausible_bodies.map(lambda value: json.dumps(value).encode()))
_headers = st.dictionaries(st.sampled_from(["x-jira-site", "x-atlassian-webhook-identifier"]),
                           st.none() | st.binary(max_size=16), max_size=2)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.none() | _any_bytes, headers=_headers)
def test_ingest_never_raises_for_any_bytes(value: bytes | None,
                                           headers: dict[str, bytes | None]) -> None:
    config = IngestConfig(max_event_bytes=4096, field_map=FIELD_MAP)
    result = ingest(record(value, headers=headers), config)
    assert isinstance(result, Accepted | Reference | PassedOver | Rejected)
    if isinstance(result, Accepted):
        ChangeEvent.model_validate(result.change)


def test_lone_surrogates_and_nul_are_replaced_and_the_event_flows() -> None:
    """PostgreSQL cannot store NUL; UTF-8 cannot encode a lone surrogate (orjson refuses it)."""
    body = updated_body(item("summary", "x"))
    body["issue"]["fields"]["summary"] = "MARK"  # the value is read from the snapshot
    raw = json.dumps(body).encode().replace(b'"MARK"', b'"bad \\ud800 and \\u0000 nul"')
    result = ingest(record(raw), CONFIG)
    assert isinstance(result, Accepted) and result.sanitized
    import orjson

    text = orjson.dumps(result.change).decode()
    assert "\\u0000" not in text and "\ufffd" in text


_SNAPSHOT_NAMES = ("summary", "status", "status_category", "assignee", "priority", "due_date",
                   "labels", "parent", "links", "description", "start_date", "story_points")
_FIELD_VALUES = st.one_of(
    st.none(), st.integers(-5, 5), st.text(max_size=6), st.lists(st.text(max_size=4), max_size=3),
    st.fixed_dictionaries({}, optional={"name": st.text(max_size=4), "key": st.text(max_size=4),
                                        "accountId": st.text(max_size=4),
                                        "statusCategory": st.fixed_dictionaries(
                                            {"key": st.sampled_from(["new", "done"])})}))


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(
    st.sampled_from(["summary", "status", "assignee", "priority", "duedate", "labels", "parent",
                     "issuelinks", "description", "customfield_1", "customfield_2"]),
    _FIELD_VALUES),
    field_map=st.sampled_from([{}, {"customfield_1": "start_date"},
                               {"customfield_1": "story_points", "customfield_2": "summary"},
                               {"customfield_1": "status", "customfield_2": "status"}]))
def test_an_update_reads_each_changed_field_as_the_full_snapshot_gives_it(
        fields: dict[str, Any], field_map: dict[str, str]) -> None:
    """Updates read only the fields their changelog names (jira_fields.snapshot_field); that must be
    what the whole snapshot (created events, full sync) says of the same field."""
    snapshot = jira_fields.issue_snapshot(fields, field_map)
    for name in _SNAPSHOT_NAMES:
        found, value = jira_fields.snapshot_field(
            name, fields, IngestConfig(field_map=field_map).field_ids_by_target)
        assert found == (name in snapshot), name
        if found:
            assert value == snapshot[name], name


def test_field_ids_by_target_puts_the_last_mapped_id_first() -> None:
    config = IngestConfig(field_map={"customfield_1": "status", "customfield_2": "summary",
                                     "customfield_3": "status"})
    assert config.field_ids_by_target == {"status": ("customfield_3", "customfield_1"),
                                          "summary": ("customfield_2",)}
    assert IngestConfig().field_ids_by_target == {}


@pytest.mark.parametrize("depth", [65, 1000, 1020])
@pytest.mark.parametrize("where", ["timestamp", "summary", "user"])
def test_a_body_nested_past_the_limit_is_rejected_not_raised(depth: int, where: str) -> None:
    """Found by `make chaos` (fuzz): at about 1,000 levels (which orjson parses) the
    normalizers and the repr in a rejection's message raised RecursionError, the stage
    restarted on the same body again and again, and its partition stopped for good."""
    body = updated_body(item("summary", "New", field_id="summary"))
    if where == "timestamp":
        body["timestamp"] = "DEEP"
    elif where == "summary":
        body["issue"]["fields"]["summary"] = "DEEP"
        body["changelog"]["items"][0]["toString"] = "DEEP"
    else:
        body["user"] = "DEEP"
    raw = orjson.dumps(body).replace(b'"DEEP"', b"[" * depth + b"1" + b"]" * depth)
    result = ingest(record(raw), CONFIG)
    assert isinstance(result, Rejected)
    assert result.reason in ("too_deep", "invalid_json")  # orjson stops at 1,024 levels


def test_a_body_within_the_depth_limit_is_still_read() -> None:
    deep: Any = "x"
    for _ in range(40):
        deep = {"a": deep}
    body = updated_body(item("summary", "New", field_id="summary"))
    body["issue"]["fields"]["customfield_99999"] = deep
    assert "summary" in accept(orjson.dumps(body))["changes"]


def test_a_rejection_message_is_short_whatever_the_value() -> None:
    body = updated_body(item("summary", "New", field_id="summary"))
    body["timestamp"] = "x" * 500_000
    result = ingest(record(orjson.dumps(body)), CONFIG)
    assert isinstance(result, Rejected) and result.reason == "invalid_timestamp"
    assert len(result.message) < 200


def test_the_dead_letter_of_a_body_near_the_record_limit_fits_on_the_topic() -> None:
    """Found by `make chaos`: base64 of a rejected 900 kB body made a letter over the
    producer's 1 MB limit, which it refused, and ingest restarted on that record for good."""
    raw = b'{"webhookEvent": "jira:issue_updated", "x": "' + b"a" * 900_000  # cut short
    moment = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    letter = dead_letter(record(raw, key=b"k" * 100_000, headers={"h": b"v" * 100_000}),
                         Rejected("invalid_json", "m" * 100_000), "ingest", moment)
    assert len(orjson.dumps(letter)) < 800_000
    assert letter["value_truncated"] is True and letter["value_bytes"] == len(raw)
    assert base64.b64decode(letter["value"]) == raw[:512 * 1024]
    DeadLetter.model_validate(letter)
    small = dead_letter(record(b"{"), Rejected("invalid_json", "m"), "ingest", moment)
    assert "value_truncated" not in small and base64.b64decode(small["value"]) == b"{"


@pytest.mark.parametrize("where", ["issue id", "site", "event"])
def test_lone_surrogates_in_ids_give_an_encodable_change(where: str) -> None:
    """Found by `make chaos` (fuzz): a lone surrogate in the issue id, the site or the event
    name raised UnicodeEncodeError when the event id was hashed or the key encoded, and the
    stage restarted on the same record for good."""
    body = updated_body(item("summary", "New", field_id="summary"))
    text = orjson.dumps(body)
    if where == "issue id":
        text = text.replace(f'"id":"{ISSUE_ID}"'.encode(), b'"id":"1\\ud83d"', 1)
    elif where == "site":
        text = text.replace(b"https://", b"https://\\udc00", 1)
    else:
        text = text.replace(b'"jira:issue_updated"', b'"jira:issue_updated\\ud800"', 1)
    result = ingest(record(text, headers={}), CONFIG)
    if isinstance(result, Accepted):
        result.task_id.encode()
        orjson.dumps(result.change)
        result.change["event_id"].encode()
    else:
        assert isinstance(result, PassedOver | Rejected)
        result.event.encode() if isinstance(result, PassedOver) else result.message.encode()


def test_an_event_name_from_a_body_is_a_label_only_when_upstream_formats_list_it() -> None:
    """Every random webhookEvent a body named became a value of the `event` label."""
    from processors.ingest.agents import _event_label

    assert _event_label("jira:issue_updated") == "jira:issue_updated"
    assert _event_label("project_deleted") == "project_deleted"
    assert _event_label("updateBoard") == "updateBoard"
    assert _event_label("user_created") == "other"
    assert _event_label("project_\udc00") == "other"


def test_a_number_beyond_a_floats_range_is_no_number() -> None:
    """Found by `make chaos` (fuzz, full size): story points of 10**400 raised OverflowError,
    and ingest restarted on that record for good."""
    body = updated_body(item("Story point estimate", "5", field_id="customfield_10016",
                             fieldtype="custom"))
    body["issue"]["fields"]["customfield_10016"] = "HUGE"
    raw = orjson.dumps(body).replace(b'"HUGE"', b"1" + b"0" * 400)
    result = ingest(record(raw), CONFIG)
    assert isinstance(result, Accepted | Rejected)
