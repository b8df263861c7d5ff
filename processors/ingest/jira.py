"""Jira Cloud and Data Center webhook bodies → `ChangeEvent` dicts (pure).

Real bodies are messy (upstream-formats.md): `user` may be missing, `fieldId` may be missing
and `field` localized, ids may be strings or numbers. Field values are read from the issue
snapshot in the body (`issue.fields`, the state after the change), which carries structure
(status category, account ids) that the changelog's display strings lose; the changelog says
*which* fields changed, and serves as the value only where the snapshot has none.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from processors.ingest.outcomes import Accepted, IngestConfig, PassedOver, Reference, Rejected
from processors.ingest.text import clean_text, short_repr

ISSUE_EVENT_KINDS = {
    "jira:issue_created": "created",
    "jira:issue_updated": "updated",
    "jira:issue_deleted": "deleted",
}

# Changelog `fieldId` (or, failing that, the English `field` name) → normalized field name.
CHANGELOG_FIELDS: dict[str, str] = {
    "summary": "summary",
    "status": "status",
    "assignee": "assignee",
    "priority": "priority",
    "duedate": "due_date",
    "due date": "due_date",
    "labels": "labels",
    "description": "description",
    "parent": "parent",
    "issueparentassociation": "parent",
    "issuelinks": "links",
    "link": "links",
}

# Earliest and latest plausible event times (epoch ms): a number outside is a broken body,
# and must not sort as the oldest (or newest) event of its task.
_MIN_TIMESTAMP_MS = 946_684_800_000  # 2000-01-01
_MAX_TIMESTAMP_MS = 4_102_444_800_000  # 2100-01-01
_EXACT_INTEGER = 2**53
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})")
TECHNICAL_JIRA = {"kind": "technical", "id": None, "name": None, "source": "jira"}


@dataclass(slots=True)
class _Subject:
    """What an event family says about its issue; the rest of a change is built alike."""

    issue_id: Any
    site_url: Any  # a `self` URL whose host is the site
    key: Any
    fields: dict[str, Any]
    author: dict[str, Any]
    kind: str
    changes: dict[str, Any]
    discriminator: Any  # changelog, comment, worklog or link id: part of the event id


def normalize(body: dict[str, Any], record: Any, config: IngestConfig
              ) -> Accepted | Reference | PassedOver | Rejected:
    """Normalize one decoded Jira webhook body. `record` is the RawRecord it came from."""
    event = body.get("webhookEvent")
    if not isinstance(event, str) or not event:
        return Rejected("missing_event", "the body has no webhookEvent")
    event = clean_text(event)  # it is hashed into event ids and named in reference events
    builder = _BUILDERS.get(event)
    if builder is None:
        if event.startswith(REFERENCE_EVENT_PREFIXES):
            return reference(body, event, record, config)
        return PassedOver("unhandled_event", event)
    subject = builder(body, event, config)
    if isinstance(subject, Rejected):
        return subject
    issue_id = subject.issue_id
    if not _is_id(issue_id):
        return Rejected("missing_issue_id", f"{event} names no issue id")
    occurred_ms = _timestamp_ms(body.get("timestamp"))
    if occurred_ms is None:
        return _bad_timestamp(body)
    site = _site(subject.site_url, record, config)
    if not site:
        return Rejected("unknown_site", f"{event}: no self URL, x-jira-site header, "
                                        "BOXSYNC_JIRA_SITE or cached issue names the Jira site",
                        issue_id=str(issue_id))
    # Text from the body: a lone surrogate would make the id unencodable (found by make chaos).
    issue_id = issue_id if type(issue_id) is int else clean_text(issue_id)
    task_id = f"jira:{site}:{issue_id}"
    discriminator = subject.discriminator
    # _hash_id's text, spelled out: the parts' types are known here, and the general join
    # cost more than the digest (measured with py-spy in the bench's ingest).
    event_id = record.header("x-atlassian-webhook-identifier") or _digest(
        f"{site}|{event}|{issue_id}|{occurred_ms}|{'' if discriminator is None else discriminator}")
    key = subject.key
    change = {
        "schema_version": 1,
        "event_id": event_id,
        "task_id": task_id,
        "source": "jira",
        "source_key": clean_text(key) if isinstance(key, str) else None,
        "project": _project_key(_object(subject.fields.get("project")), key),
        "kind": subject.kind,
        "occurred_at": _iso_ms(occurred_ms),
        "author": subject.author,
        "changes": subject.changes,
        "origin": record.origin(),
        "tiebreak": _tiebreak(subject.discriminator),
        "upstream_event": event,
    }
    return Accepted(task_id, change, "jira", event)


def _issue_subject(body: dict[str, Any], event: str, config: IngestConfig
                   ) -> _Subject | Rejected:
    issue = body.get("issue")
    if not isinstance(issue, dict):
        return Rejected("missing_issue", f"{event} without an issue object")
    fields = _object(issue.get("fields"))
    changelog = _object(body.get("changelog"))
    kind = ISSUE_EVENT_KINDS[event]
    changes = _changes(kind, fields, changelog, config)
    if kind == "updated" and not changes:
        kind = "activity"  # a comment, or only fields boxsync does not map
    return _Subject(issue.get("id"), issue.get("self"), issue.get("key"), fields,
                    person(body.get("user")), kind, changes, changelog.get("id"))


def _comment_subject(body: dict[str, Any], event: str, config: IngestConfig
                     ) -> _Subject | Rejected:
    """comment_*: activity of the issue by the comment's author (the body has no `user`)."""
    issue, comment = body.get("issue"), body.get("comment")
    if not isinstance(issue, dict):
        return Rejected("missing_issue", f"{event} without an issue object")
    if not isinstance(comment, dict):
        return Rejected("missing_comment", f"{event} without a comment object")
    author = comment.get("updateAuthor") if event == "comment_updated" else None
    return _Subject(issue.get("id"), comment.get("self") or issue.get("self"), issue.get("key"),
                    _object(issue.get("fields")), person(author or comment.get("author")),
                    "activity", {}, comment.get("id"))


def _worklog_subject(body: dict[str, Any], event: str, config: IngestConfig
                     ) -> _Subject | Rejected:
    """worklog_*: activity of the issue named only by `worklog.issueId`."""
    worklog = body.get("worklog")
    if not isinstance(worklog, dict):
        return Rejected("missing_worklog", f"{event} without a worklog object")
    author = worklog.get("updateAuthor") if event == "worklog_updated" else None
    return _Subject(worklog.get("issueId"), worklog.get("self"), None, {},
                    person(author or worklog.get("author")), "activity", {}, worklog.get("id"))


def _link_subject(body: dict[str, Any], event: str, config: IngestConfig
                  ) -> _Subject | Rejected:
    """issuelink_*: activity of the source issue; numeric ids and no self URL, so the site
    comes from the `x-jira-site` header or BOXSYNC_JIRA_SITE."""
    link = body.get("issueLink")
    if not isinstance(link, dict):
        return Rejected("missing_issue_link", f"{event} without an issueLink object")
    return _Subject(link.get("sourceIssueId"), None, None, {}, person(body.get("user")),
                    "activity", {}, link.get("id"))


_Builder = Callable[[dict[str, Any], str, IngestConfig], "_Subject | Rejected"]
_BUILDERS: dict[str, _Builder] = {
    **dict.fromkeys(ISSUE_EVENT_KINDS, _issue_subject),
    **dict.fromkeys(("comment_created", "comment_updated", "comment_deleted"),
                    _comment_subject),
    **dict.fromkeys(("worklog_created", "worklog_updated", "worklog_deleted"),
                    _worklog_subject),
    **dict.fromkeys(("issuelink_created", "issuelink_deleted"), _link_subject),
}
# Not about one task: passed on to `sync.reference` for the box filters (which act on project
# deletion and archiving). upstream prefix -> (entity, the body's key holding the object)
_REFERENCE_ENTITIES = {"project_": "project", "jira:version_": "version", "sprint_": "sprint",
                       "board_": "board"}
REFERENCE_EVENT_PREFIXES = tuple(_REFERENCE_ENTITIES)
# The event names a metric label may take (upstream-formats §A2); any other is "other", so that
# a body cannot add a label value of its own choosing.
KNOWN_EVENTS = frozenset(_BUILDERS) | {
    prefix + suffix for prefix in REFERENCE_EVENT_PREFIXES
    for suffix in ("created", "updated", "deleted", "soft_deleted", "restored_deleted",
                   "archived", "restored_archived", "released", "unreleased", "moved", "merged",
                   "started", "closed")}
_REFERENCE_DATA = ("key", "name", "archived", "released", "releaseDate", "state", "projectId",
                   "originBoardId", "projectTypeKey")


def reference(body: dict[str, Any], event: str, record: Any, config: IngestConfig
              ) -> Reference | Rejected:
    """A project, version, sprint or board event → a `ReferenceEvent` dict."""
    entity = next(name for prefix, name in _REFERENCE_ENTITIES.items()
                  if event.startswith(prefix))
    subject = body.get(entity)
    if not isinstance(subject, dict):
        return Rejected(f"missing_{entity}", f"{event} without a {entity} object")
    entity_id = subject.get("id")
    if not _is_id(entity_id):
        return Rejected("missing_entity_id", f"{event} without {entity}.id")
    occurred_ms = _timestamp_ms(body.get("timestamp"))
    if occurred_ms is None:
        return _bad_timestamp(body)
    site = _site(subject.get("self"), record, config)
    key = subject.get("key")
    reference_event = {
        "schema_version": 1,
        "event_id": record.header("x-atlassian-webhook-identifier") or _hash_id(
            site, event, entity, entity_id, occurred_ms),
        "source": "jira",
        "site": site,
        "upstream_event": event,
        "entity": entity,
        "entity_id": str(entity_id),
        "project": clean_text(key) if entity == "project" and isinstance(key, str) else None,
        "occurred_at": _iso_ms(occurred_ms),
        "data": {name: clean_text(value) if isinstance(value, str) else value
                 for name in _REFERENCE_DATA
                 if isinstance(value := subject.get(name), str | int | float | bool)},
        "origin": record.origin(),
    }
    return Reference(f"{entity}:{site or ''}:{entity_id}", reference_event, "jira", event)


def person(user: object) -> dict[str, Any]:
    """A Jira user object → a person. Apps (Automation for Jira) and nobody are technical."""
    if not isinstance(user, dict):
        return dict(TECHNICAL_JIRA)
    # Cloud identifies people by accountId; Data Center by `key` (stable), shown by `name`.
    user_id = user.get("accountId") or user.get("key") or user.get("name")
    name = user.get("displayName") or user.get("name")
    name = clean_text(name) if isinstance(name, str) else None
    if user.get("accountType") == "app":
        return {"kind": "technical", "id": _str_or_none(user_id), "name": name,
                "source": "jira"}
    if not user_id:
        return dict(TECHNICAL_JIRA)
    return {"kind": "user", "id": str(user_id), "name": name, "source": "jira"}


def _changes(kind: str, fields: Mapping[str, Any], changelog: Mapping[str, Any],
             config: IngestConfig) -> dict[str, Any]:
    if kind == "deleted":
        return {}
    field_map = config.field_map
    if kind == "created":
        return issue_snapshot(fields, field_map)
    mapped = config.field_ids_by_target
    # An update reads from the snapshot only the fields its changelog names (usually one or
    # two of the ten), as issue_snapshot would give them.
    changed: dict[str, Any] = {}
    items = changelog.get("items")
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        name = _changelog_name(item, field_map)
        if name is None:
            continue
        found, value = _snapshot_field(name, fields, mapped)
        changed[name] = value if found else _item_value(name, item)
        if name == "status":
            found, category = _snapshot_field("status_category", fields, mapped)
            if found:
                changed["status_category"] = category
    return changed


def issue_snapshot(fields: Mapping[str, Any], field_map: Mapping[str, str]) -> dict[str, Any]:
    """Every known normalized field (contract §5) present in `issue.fields`."""
    out: dict[str, Any] = {}
    for name, (key, read) in _SNAPSHOT_FIELDS.items():
        if key in fields:
            out[name] = read(fields[key])
    status = fields.get("status")
    if isinstance(status, dict):
        out["status"] = _text(status.get("name"))
        category = _status_category(status)
        if category is not None:
            out["status_category"] = category
    for field_id, target in field_map.items():
        if field_id in fields:
            out[target] = _custom_value(target, fields[field_id])
    return out


def _snapshot_field(name: str, fields: Mapping[str, Any],
                    mapped: Mapping[str, tuple[str, ...]]) -> tuple[bool, Any]:
    """(True, value) when issue_snapshot(fields, field_map) has `name`, else (False, None);
    `mapped` is IngestConfig.field_ids_by_target of that field_map."""
    if mapped:
        # A mapped custom field wins over a built-in one of the same name; the last mapped
        # one present wins, as in issue_snapshot's loop.
        for field_id in mapped.get(name, ()):
            if field_id in fields:
                return True, _custom_value(name, fields[field_id])
    if name == "status" or name == "status_category":
        status = fields.get("status")
        if not isinstance(status, dict):
            return False, None
        if name == "status":
            return True, _text(status.get("name"))
        category = _status_category(status)
        return category is not None, category
    entry = _SNAPSHOT_FIELDS.get(name)
    if entry is None or entry[0] not in fields:
        return False, None
    return True, entry[1](fields[entry[0]])


def _status_category(status: Mapping[str, Any]) -> str | None:
    category = status.get("statusCategory")
    if isinstance(category, dict) and isinstance(category.get("key"), str):
        return str(category["key"])
    return None


def _named(value: Any) -> str | None:
    return _text(value.get("name")) if isinstance(value, dict) else None


def _keyed(value: Any) -> str | None:
    return _text(value.get("key")) if isinstance(value, dict) else None


def _labels(value: Any) -> list[str]:
    return sorted(clean_text(x) for x in value if isinstance(x, str)) \
        if isinstance(value, list) else []


def _changelog_name(item: Mapping[str, Any], field_map: Mapping[str, str]) -> str | None:
    field_id = item.get("fieldId")
    if isinstance(field_id, str):
        if field_id in field_map:
            return field_map[field_id]
        # Ids are lower case as a rule: the lookup without lowering first.
        name = CHANGELOG_FIELDS.get(field_id) or CHANGELOG_FIELDS.get(field_id.lower())
        if name is not None:
            return name
    # No fieldId (Data Center, some Cloud items): fall back to the display name, which is
    # only reliable when it is the English one; localized names are not guessed.
    field = item.get("field")
    return CHANGELOG_FIELDS.get(field.lower()) if isinstance(field, str) else None


def _item_value(name: str, item: Mapping[str, Any]) -> Any:
    shown, raw = item.get("toString"), item.get("to")
    if name == "assignee":
        return _str_or_none(item.get("tmpToAccountId") or raw)
    if name in ("due_date", "start_date"):
        return _date(raw if raw is not None else shown)
    if name == "labels":
        return sorted(clean_text(shown).split()) if isinstance(shown, str) else []
    if name == "story_points":
        return _number(shown if shown is not None else raw)
    return _text(shown if shown is not None else raw)


def _custom_value(target: str, value: Any) -> Any:
    if target.endswith("_date"):
        return _date(value)
    if target == "story_points":
        return _number(value)
    if isinstance(value, dict) and "value" in value:
        return _text(value["value"])
    return _text(value) if isinstance(value, str) else value


def _links(value: Any) -> list[str]:
    keys = set()
    for link in value if isinstance(value, list) else ():
        if not isinstance(link, dict):
            continue
        for side in ("inwardIssue", "outwardIssue"):
            other = link.get(side)
            if isinstance(other, dict) and isinstance(other.get("key"), str):
                keys.add(clean_text(other["key"]))
    return sorted(keys)


def _is_id(value: Any) -> bool:
    """Jira ids come as strings or numbers; a bool, an object or an empty string is none."""
    if isinstance(value, str):
        return value != ""
    return isinstance(value, int) and not isinstance(value, bool)


def _bad_timestamp(body: Mapping[str, Any]) -> Rejected:
    return Rejected("invalid_timestamp",
                    f"timestamp {short_repr(body.get('timestamp'))} is not epoch milliseconds")


def _site(self_url: Any, record: Any, config: IngestConfig) -> str | None:
    """The host of a `self` URL, else the `x-jira-site` header, else BOXSYNC_JIRA_SITE."""
    site = _host(self_url) or record.header("x-jira-site") or config.default_jira_site
    return clean_text(site.strip().lower()) if site else None


def _timestamp_ms(value: Any) -> int | None:
    if type(value) is int:  # the usual case, checked first
        return value if _MIN_TIMESTAMP_MS <= value <= _MAX_TIMESTAMP_MS else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if not _MIN_TIMESTAMP_MS <= value <= _MAX_TIMESTAMP_MS:
        return None
    return int(value)


def _iso_ms(epoch_ms: int) -> str:
    seconds, millis = divmod(epoch_ms, 1000)
    return _iso_second(seconds) + _MILLIS[millis]


_MILLIS = tuple(f".{millis:03d}Z" for millis in range(1000))


@functools.lru_cache(maxsize=1024)
def _iso_second(epoch_seconds: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS` in UTC; cached, since events of a second share it."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _host(url: Any) -> str | None:
    if not isinstance(url, str) or "://" not in url:
        return None
    # The usual `https://host/...`: the authority, looked up in a small cache (a site's events
    # share it; checking and lowering it costs a microsecond per event otherwise).
    # (Between the second and third slash, as url.split("/", 3)[2] would find it, without
    # building the list.)
    second = url.find("/", url.find("/") + 1)
    end = url.find("/", second + 1)
    authority = "" if second < 0 else url[second + 1:end] if end >= 0 else url[second + 1:]
    host = _HOSTS.get(authority)
    if host is not None:
        return host
    if authority and authority.isascii() and not any(c in authority for c in "[]@:"):
        host = authority.lower()
        if len(_HOSTS) >= _HOSTS_KEPT:
            _HOSTS.clear()
        _HOSTS[authority] = host
        return host
    try:
        parsed = urlsplit(url).hostname
    except ValueError:  # e.g. an unbalanced "[" read as a broken IPv6 literal
        return None
    return parsed.lower() if parsed else None


_HOSTS: dict[str, str] = {}
_HOSTS_KEPT = 1024


def _project_key(project: Mapping[str, Any], issue_key: Any) -> str | None:
    if isinstance(project.get("key"), str):
        return clean_text(project["key"])
    if isinstance(issue_key, str) and "-" in issue_key:
        return issue_key.rsplit("-", 1)[0]
    return None


def _user_id(user: Any) -> str | None:
    if not isinstance(user, dict):
        return None
    return _str_or_none(user.get("accountId") or user.get("key") or user.get("name"))


def _date(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    match = _DATE.match(value.strip())
    return match.group(1) if match else None


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and abs(value) >= _EXACT_INTEGER:
        # Beyond a float's range (10**400) float() raises: no number anyone estimates.
        try:
            value = float(value)
        except OverflowError:
            return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        # Whole numbers print as integers, as long as they fit JSON readers' exact range.
        return int(value) if value.is_integer() and abs(value) < _EXACT_INTEGER else value
    return value if isinstance(value, int) else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return clean_text(value if isinstance(value, str) else str(value))


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _tiebreak(changelog_id: Any) -> str:
    text = str(changelog_id) if changelog_id is not None else ""
    return text.zfill(20) if text.isdigit() else text


def _hash_id(*parts: Any) -> str:
    return _digest("|".join(["" if part is None else str(part) for part in parts]))


def _digest(joined: str) -> str:
    return hashlib.sha256(joined.encode()).hexdigest()[:32]

# Normalized name → (its key in `issue.fields`, how to read it); `status` (with its
# `status_category`) is read apart, since one key gives two fields.
_SNAPSHOT_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "summary": ("summary", _text),
    "assignee": ("assignee", _user_id),
    "priority": ("priority", _named),
    "due_date": ("duedate", _date),
    "labels": ("labels", _labels),
    "parent": ("parent", _keyed),
    "links": ("issuelinks", _links),
    "description": ("description", _text),
}
