"""Trello webhook bodies `{action, model}` → `ChangeEvent` dicts (pure).

The action is what changed, `model` the watched object after the change (a board, a list or a
card, depending on where the webhook was registered): only the action is read, so the result
does not depend on what the webhook watches. Field values come from `action.data`
(upstream-formats.md C3): `data.card` holds the card's new value of every changed key, and an
`updateCard` says which keys changed through the keys of `data.old` (several at once).

Mapping (action type, `updateCard` key of `data.old`) → kind and changes:

| action                         | kind       | changes                                        |
|--------------------------------|------------|------------------------------------------------|
| `createCard`                   | created    | summary, list; description, due_date, closed   |
|                                |            | when the card carries them                     |
| `updateCard` `old.name`        | updated    | summary = card.name                            |
| `updateCard` `old.desc`        | updated    | description = card.desc ("" → null)            |
| `updateCard` `old.due`         | updated    | due_date = UTC date of card.due, or null       |
| `updateCard` `old.idList`      | updated    | list = listAfter.name                          |
| `updateCard` `old.closed`      | updated    | closed = card.closed (true: archived)          |
| `updateCard`, other keys only  | activity   | none (position, dueComplete, cover, ...)       |
| `deleteCard`                   | deleted    | none                                           |
| `addMemberToCard`,             | activity   | none: membership is a delta and the body has   |
| `removeMemberFromCard`         |            | no member list to give as a new value          |
| `commentCard`                  | activity   | none                                           |
| `updateCheckItemStateOnCard`   | activity   | none                                           |
| `updateBoard` closing a board,  | a ReferenceEvent (`board_closed`,              |
| `deleteBoard`                  | `board_deleted`) on `sync.reference`: a box    |
|                                | whose scope names the board is flagged         |
| any other type                 | passed over (`unhandled_event`), counted       |

The author is `action.idMemberCreator` (never `action.member`, the affected member of a
membership action); the technical user when the action names nobody.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from processors.ingest.outcomes import Accepted, IngestConfig, PassedOver, Reference, Rejected
from processors.ingest.text import clean_text, short_repr
from processors.wire import SCHEMA_VERSION

# The card actions boxsync acts on, and the kind each gives (updateCard may become activity).
CARD_ACTION_KINDS = {
    "createCard": "created",
    "updateCard": "updated",
    "deleteCard": "deleted",
    "addMemberToCard": "activity",
    "removeMemberFromCard": "activity",
    "commentCard": "activity",
    "updateCheckItemStateOnCard": "activity",
}

TECHNICAL_TRELLO = {"kind": "technical", "id": None, "name": None, "source": "trello"}

# Plausible action times (the same bounds as Jira's): outside them the body is broken, and must
# not sort as the oldest (or newest) event of its card.
_MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)
_MAX_TIME = datetime(2100, 1, 1, tzinfo=UTC)
# What Trello sends (`2015-06-28T15:02:45.235Z`) is already the contract's form.
_CANONICAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z", re.ASCII)
_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})", re.ASCII)
_NO_VALUE = object()


def normalize(body: dict[str, Any], record: Any, config: IngestConfig
              ) -> Accepted | Reference | PassedOver | Rejected:
    """Normalize one decoded Trello webhook body. `record` is the RawRecord it came from."""
    action = body.get("action")
    if not isinstance(action, dict):
        return Rejected("missing_action", "the body has no action object")
    action_type = action.get("type")
    if not isinstance(action_type, str) or not action_type:
        return Rejected("missing_event", "the action has no type")
    action_type = clean_text(action_type)  # hashed into event ids
    kind = CARD_ACTION_KINDS.get(action_type)
    if kind is None:
        if action_type in BOARD_ACTIONS:
            return board_event(action, action_type, record)
        return PassedOver("unhandled_event", action_type)
    data = action.get("data")
    data = data if isinstance(data, dict) else {}
    card = data.get("card")
    card = card if isinstance(card, dict) else {}
    card_id = _id(card.get("id"))
    if card_id is None:
        return Rejected("missing_card_id", f"{action_type} without data.card.id")
    date = action.get("date")
    occurred_at = _occurred_at(date)
    if occurred_at is None:
        return Rejected("invalid_timestamp",
                        f"action.date {short_repr(date)} is not an ISO-8601 time with a zone")
    if kind == "created":
        changes = _created(card, data)
    elif kind == "updated":
        changes = _updated(card, data)
        if not changes:
            kind = "activity"
    else:
        changes = {}
    action_id = _id(action.get("id"))
    event_id = action_id or _hash_id(card_id, action_type, occurred_at,
                                     action.get("idMemberCreator"))
    task_id = f"trello:{card_id}"
    board = data.get("board")
    board_id = _id(board.get("id")) if isinstance(board, dict) else None
    short_link = card.get("shortLink")
    source_key = clean_text(short_link) if isinstance(short_link, str) else None
    change = {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id,
        "task_id": task_id,
        "source": "trello",
        "source_key": source_key or None,
        "project": f"trello:{board_id}" if board_id else None,
        "kind": kind,
        "occurred_at": occurred_at,
        "author": person(action),
        "changes": changes,
        "origin": record.origin(),
        # Action ids are ObjectIds: their hex starts with the creation second, so they sort
        # by time (and are unique) within equal action dates.
        "tiebreak": action_id or "",
        "upstream_event": action_type,
    }
    return Accepted(task_id, change, "trello", action_type)


BOARD_ACTIONS = ("updateBoard", "deleteBoard")


def board_event(action: dict[str, Any], action_type: str, record: Any
                ) -> Reference | PassedOver | Rejected:
    """A board closed (`updateBoard` with `old.closed`) or deleted → a ReferenceEvent dict;
    any other board update is passed over."""
    data = action.get("data")
    data = data if isinstance(data, dict) else {}
    board = data.get("board")
    board = board if isinstance(board, dict) else {}
    old = data.get("old")
    closing = isinstance(old, dict) and "closed" in old and board.get("closed") is True
    if action_type == "updateBoard" and not closing:
        return PassedOver("unhandled_event", action_type)
    board_id = _id(board.get("id"))
    if board_id is None:
        return Rejected("missing_board_id", f"{action_type} without data.board.id")
    occurred_at = _occurred_at(action.get("date"))
    if occurred_at is None:
        return Rejected("invalid_timestamp", f"action.date {short_repr(action.get('date'))} "
                        "is not an ISO-8601 time with a zone")
    upstream = "board_closed" if action_type == "updateBoard" else "board_deleted"
    name = board.get("name")
    reference_event = {
        "schema_version": SCHEMA_VERSION,
        "event_id": _id(action.get("id")) or _hash_id(board_id, action_type, occurred_at),
        "source": "trello", "site": None, "upstream_event": upstream, "entity": "board",
        "entity_id": board_id, "project": f"trello:{board_id}", "occurred_at": occurred_at,
        "data": {"name": clean_text(name)} if isinstance(name, str) else {},
        "origin": record.origin(),
    }
    return Reference(f"board:trello:{board_id}", reference_event, "trello", action_type)


def person(action: dict[str, Any]) -> dict[str, Any]:
    """The author of an action (`idMemberCreator`), or the technical user when it names none.

    `action.member` and `data.idMember` (membership actions) are the affected member, not the
    author, and are never read here.
    """
    creator = action.get("memberCreator")
    creator = creator if isinstance(creator, dict) else {}
    member_id = _id(action.get("idMemberCreator")) or _id(creator.get("id"))
    if member_id is None:
        return dict(TECHNICAL_TRELLO)
    name = creator.get("fullName") or creator.get("username")
    return {"kind": "user", "id": member_id,
            "name": clean_text(name) if isinstance(name, str) else None, "source": "trello"}


def _created(card: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    name = card.get("name")
    if isinstance(name, str):
        changes["summary"] = clean_text(name)
    list_name = _list_name(data.get("list"))
    if list_name is not _NO_VALUE:
        changes["list"] = list_name
    if "desc" in card:
        _set(changes, "description", _description(card["desc"]))
    if "due" in card:
        _set(changes, "due_date", _due_date(card["due"]))
    if isinstance(card.get("closed"), bool):
        changes["closed"] = card["closed"]
    return changes


def card_snapshot(card: dict[str, Any], list_name: str | None) -> dict[str, Any]:
    """The changes a `createCard` of this card would carry (summary, list, description,
    due_date, closed), read from a card object of the REST API and the name of its list.

    Full sync lists cards over REST; going through the same rules as the webhooks keeps the two
    paths from disagreeing on a value (an empty description, a due time near midnight).
    """
    return _created(card, {"list": {"name": list_name}} if list_name is not None else {})


def _updated(card: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The changed fields of an `updateCard`, from the keys of `data.old`."""
    old = data.get("old")
    if not isinstance(old, dict):
        return {}
    changes: dict[str, Any] = {}
    if "name" in old and isinstance(card.get("name"), str):
        changes["summary"] = clean_text(card["name"])
    if "desc" in old and "desc" in card:
        _set(changes, "description", _description(card["desc"]))
    if "due" in old and "due" in card:
        _set(changes, "due_date", _due_date(card["due"]))
    if "idList" in old:
        # A move carries listBefore/listAfter and no `list`; `list` is only a fallback.
        list_name = _list_name(data.get("listAfter"))
        if list_name is _NO_VALUE:
            list_name = _list_name(data.get("list"))
        _set(changes, "list", list_name)
    if "closed" in old:
        closed = card.get("closed")
        if not isinstance(closed, bool) and isinstance(old["closed"], bool):
            closed = not old["closed"]
        if isinstance(closed, bool):
            changes["closed"] = closed
    return changes


def _set(changes: dict[str, Any], name: str, value: Any) -> None:
    if value is not _NO_VALUE:
        changes[name] = value


def _list_name(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return clean_text(value["name"])
    return _NO_VALUE


def _description(value: Any) -> Any:
    """Trello clears a description to ""; like Jira's, an empty description is null."""
    if value is None or value == "":
        return None
    return clean_text(value) if isinstance(value, str) else _NO_VALUE


def _due_date(value: Any) -> Any:
    """A due date-time (UTC, `...Z`) → `YYYY-MM-DD` of its UTC day; null clears it.

    A value that is not a date is left out rather than read as a clear.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        return _NO_VALUE
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
        return moment.strftime("%Y-%m-%d") if moment.year >= 1000 else _NO_VALUE
    except (ValueError, OverflowError):
        match = _DATE.match(text)
        return match.group(1) if match else _NO_VALUE


def _occurred_at(value: Any) -> str | None:
    """`action.date` → the contract's `YYYY-MM-DDTHH:MM:SS.mmmZ`, or None when it is not a
    plausible ISO-8601 time with a zone."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            return None
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    if not _MIN_TIME <= moment < _MAX_TIME:
        return None
    if _CANONICAL_TIME.match(value):
        return value
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S')}.{moment.microsecond // 1000:03d}Z"


def _id(value: Any) -> str | None:
    """A Trello id (24-hex string); numbers are tolerated, empty and other types are not."""
    if isinstance(value, str):
        return clean_text(value) or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _hash_id(*parts: Any) -> str:
    """An event id for an action without `id` (not seen from Trello): stable across retries."""
    joined = "|".join("" if part is None else str(part) for part in parts)
    return hashlib.sha256(joined.encode("utf-8", "replace")).hexdigest()[:32]
