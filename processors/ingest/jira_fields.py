"""Jira issue fields and changelog items → the normalized fields of contract §5 (pure).

Shared by the webhook ingest (processors.ingest.jira) and the REST full sync
(processors.sources.jira), so that a field has the same value whichever way it arrived.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from processors.ingest.outcomes import IngestConfig
from processors.ingest.text import clean_text

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

_EXACT_INTEGER = 2**53
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})")


def changes_of(kind: str, fields: Mapping[str, Any], changelog: Mapping[str, Any],
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
        found, value = snapshot_field(name, fields, mapped)
        changed[name] = value if found else _item_value(name, item)
        if name == "status":
            found, category = snapshot_field("status_category", fields, mapped)
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


def snapshot_field(name: str, fields: Mapping[str, Any],
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
        return str_or_none(item.get("tmpToAccountId") or raw)
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


def str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


# Normalized name → (its key in `issue.fields`, how to read it); `status` (with its
# `status_category`) is read apart, since one key gives two fields.
def person_id(user: Any) -> str | None:
    if not isinstance(user, dict):
        return None
    return str_or_none(user.get("accountId") or user.get("key") or user.get("name"))


_SNAPSHOT_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "summary": ("summary", _text),
    "assignee": ("assignee", person_id),
    "priority": ("priority", _named),
    "due_date": ("duedate", _date),
    "labels": ("labels", _labels),
    "parent": ("parent", _keyed),
    "links": ("issuelinks", _links),
    "description": ("description", _text),
}
