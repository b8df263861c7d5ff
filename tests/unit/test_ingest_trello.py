"""Ingest of Trello webhook bodies `{action, model}` into `ChangeEvent` dicts.

The bodies below are written from upstream-formats.md section C (shapes of real Trello webhook
deliveries); they are not copies of captured files. Every `Accepted` change is validated against
the pydantic contract model `schemas.events.ChangeEvent`, and every body handed to ingest as a
valid one is parsed by the documentation models of `schemas.upstream.trello`.
"""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.ingest import trello
from processors.ingest.logic import (
    Accepted,
    IngestConfig,
    PassedOver,
    RawRecord,
    Reference,
    Rejected,
    ingest,
)
from processors.ingest.text import clean_text
from processors.runtime.records import dead_letter
from schemas.events import ChangeEvent, DeadLetter
from schemas.upstream.trello import Body

# --------------------------------------------------------------------------------------------
# Builders: Trello webhook bodies as section C describes them
# --------------------------------------------------------------------------------------------

BOARD_ID = "5a1f0c9e8d7b6a5f4e3d2c1b"
CARD_ID = "5e8a7c6b5d4e3f2a1b0c9d8e"
SHORT_LINK = "aB3dE5fG"
ACTION_ID = "65e2ee2a1f2e3d4c5b6a7980"
ADA_ID = "54f0a1b2c3d4e5f60718293a"
BOB_ID = "5b10ac8d82e05b22cc7d4ef5"
LIST_TODO = {"id": "5a1f0c9e8d7b6a5f4e3d2c20", "name": "To Do"}
LIST_DOING = {"id": "5a1f0c9e8d7b6a5f4e3d2c21", "name": "Doing"}

DATE = "2026-03-02T09:15:30.123Z"
OCCURRED = datetime(2026, 3, 2, 9, 15, 30, 123000, tzinfo=UTC)
NOW = datetime(2026, 3, 2, 9, 15, 31, 500000, tzinfo=UTC)
CONFIG = IngestConfig()
TASK_ID = f"trello:{CARD_ID}"
PROJECT = f"trello:{BOARD_ID}"


def member(member_id: str = ADA_ID, full_name: str = "Ada Lovelace",
           username: str = "adalovelace") -> dict[str, Any]:
    return {"id": member_id, "username": username, "fullName": full_name,
            "initials": "".join(part[0] for part in full_name.split()),
            "avatarHash": "0123456789abcdef0123456789abcdef", "activityBlocked": False,
            "avatarUrl": f"https://trello-members.s3.amazonaws.com/{member_id}/0123",
            "idMemberReferrer": None, "nonPublic": {}, "nonPublicAvailable": True}


def board() -> dict[str, Any]:
    return {"id": BOARD_ID, "name": "Operations", "shortLink": "xY7wV9uT"}


def card(**fields: Any) -> dict[str, Any]:
    value: dict[str, Any] = {"id": CARD_ID, "name": "Rotate the on-call schedule",
                             "idShort": 42, "shortLink": SHORT_LINK}
    value.update(fields)
    return value


def action(action_type: str, data: dict[str, Any], *, action_id: Any = ACTION_ID,
           date: Any = DATE, creator: dict[str, Any] | None = None,
           translation_key: str = "action_generic", **extra: Any) -> dict[str, Any]:
    author = member() if creator is None else creator
    value: dict[str, Any] = {
        "id": action_id,
        "idMemberCreator": author["id"],
        "type": action_type,
        "date": date,
        "data": data,
        "appCreator": None,
        "limits": {},
        "display": {"translationKey": translation_key, "entities": {}},
        "memberCreator": author,
    }
    value.update(extra)
    return value


def body(act: dict[str, Any], model: dict[str, Any] | None = None) -> dict[str, Any]:
    """A delivery of a webhook that watches the board (`model` is the board after it)."""
    return {"action": act,
            "model": model if model is not None else {**board(), "desc": "", "closed": False}}


def created_body(**card_fields: Any) -> dict[str, Any]:
    return body(action("createCard", {"board": board(), "list": LIST_TODO,
                                      "card": card(**card_fields)},
                       translation_key="action_create_card"))


def updated_body(card_fields: dict[str, Any], old: dict[str, Any],
                 **data: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"board": board(), "card": card(**card_fields), "old": old}
    if "list" not in data and "listAfter" not in data:
        payload["list"] = LIST_TODO
    payload.update(data)
    return body(action("updateCard", payload))


def rename_body() -> dict[str, Any]:
    return updated_body({"name": "Rotate the on-call schedule weekly"},
                        {"name": "Rotate the on-call schedule"})


def description_body(desc: str = "Weekly shifts from **April**.",
                     old: str = "") -> dict[str, Any]:
    return updated_body({"desc": desc}, {"desc": old})


def due_body(due: str | None, old: str | None = None) -> dict[str, Any]:
    return body(action("updateCard", {"board": board(), "list": LIST_TODO,
                                      "card": card(due=due), "old": {"due": old}},
                       translation_key="action_changed_a_due_date"))


def move_body() -> dict[str, Any]:
    return body(action("updateCard", {
        "board": board(), "card": card(idList=LIST_DOING["id"]),
        "old": {"idList": LIST_TODO["id"]},
        "listBefore": LIST_TODO, "listAfter": LIST_DOING},
        translation_key="action_move_card_from_list_to_list"))


def archive_body(closed: bool = True) -> dict[str, Any]:
    return body(action("updateCard", {"board": board(), "list": LIST_TODO,
                                      "card": card(closed=closed), "old": {"closed": not closed}},
                       translation_key="action_archived_card"))


def deleted_body() -> dict[str, Any]:
    return body(action("deleteCard", {"board": board(), "list": LIST_TODO,
                                      "card": {"id": CARD_ID, "idShort": 42,
                                               "shortLink": SHORT_LINK}},
                       translation_key="action_delete_card"))


def member_body(action_type: str) -> dict[str, Any]:
    """Ada adds (or removes) Bob: Bob is the affected member, Ada the author."""
    data: dict[str, Any] = {"board": board(), "card": card(), "idMember": BOB_ID}
    if action_type == "removeMemberFromCard":
        data["deactivated"] = False
    return body(action(action_type, data, member=member(BOB_ID, "Bob Builder", "bobbuilder"),
                       translation_key="action_member_joined_card"))


def comment_body() -> dict[str, Any]:
    return body(action("commentCard", {"board": board(), "list": LIST_TODO, "card": card(),
                                       "text": "Draft rota attached."},
                       creator=member(BOB_ID, "Bob Builder", "bobbuilder"),
                       translation_key="action_comment_on_card"))


def check_item_body() -> dict[str, Any]:
    return body(action("updateCheckItemStateOnCard", {
        "board": board(), "card": card(),
        "checkItem": {"id": "5e8a7c6b5d4e3f2a1b0c9d90", "name": "Ask the team",
                      "state": "complete"},
        "checklist": {"id": "5e8a7c6b5d4e3f2a1b0c9d91", "name": "Checklist"}},
        translation_key="action_completed_checkitem"))


def record(value: dict[str, Any] | bytes | None, *, offset: int = 7,
           key: bytes | None = CARD_ID.encode(), full_topic: str = "") -> RawRecord:
    raw = value if isinstance(value, bytes | None) else json.dumps(value).encode()
    return RawRecord(topic="trello.events", partition=0, offset=offset, key=key, value=raw,
                     full_topic=full_topic)


def accept(value: dict[str, Any] | bytes, **record_args: Any) -> dict[str, Any]:
    """Ingest and expect an `Accepted` whose change satisfies the ChangeEvent contract."""
    result = ingest(record(value, **record_args), CONFIG)
    assert isinstance(result, Accepted), result
    ChangeEvent.model_validate(result.change)
    assert result.task_id == result.change["task_id"]
    assert result.source == "trello"
    assert result.event == result.change["upstream_event"]
    return result.change


def reject(value: dict[str, Any] | bytes | None) -> Rejected:
    result = ingest(record(value), CONFIG)
    assert isinstance(result, Rejected), result
    return result


# Every valid body this file builds, for the contract and documentation-model checks.
VALID_BODIES = {
    "createCard": created_body,
    "rename": rename_body,
    "description": description_body,
    "due-set": lambda: due_body("2026-06-05T10:00:00.000Z"),
    "due-cleared": lambda: due_body(None, "2026-06-05T10:00:00.000Z"),
    "move": move_body,
    "archive": archive_body,
    "unarchive": lambda: archive_body(False),
    "deleteCard": deleted_body,
    "addMemberToCard": lambda: member_body("addMemberToCard"),
    "removeMemberFromCard": lambda: member_body("removeMemberFromCard"),
    "commentCard": comment_body,
    "updateCheckItemStateOnCard": check_item_body,
}


# --------------------------------------------------------------------------------------------
# createCard
# --------------------------------------------------------------------------------------------

def test_create_card_is_a_created_change_of_the_card() -> None:
    change = accept(created_body())
    assert change["kind"] == "created"
    assert change["task_id"] == TASK_ID
    assert change["source"] == "trello"
    assert change["source_key"] == SHORT_LINK
    assert change["project"] == PROJECT
    assert change["upstream_event"] == "createCard"
    assert change["event_id"] == ACTION_ID
    assert change["tiebreak"] == ACTION_ID
    assert change["origin"] == {"topic": "trello.events", "partition": 0, "offset": 7}
    assert change["changes"] == {"summary": "Rotate the on-call schedule", "list": "To Do"}


def test_create_card_carries_description_and_due_when_present() -> None:
    change = accept(created_body(desc="Weekly shifts.", due="2026-06-05T10:00:00.000Z"))
    assert change["changes"] == {"summary": "Rotate the on-call schedule", "list": "To Do",
                                 "description": "Weekly shifts.", "due_date": "2026-06-05"}


def test_occurred_at_is_the_action_date_in_utc_milliseconds() -> None:
    change = accept(created_body())
    assert change["occurred_at"] == DATE
    assert ChangeEvent.model_validate(change).occurred_at == OCCURRED


@pytest.mark.parametrize(("date", "expected"), [
    ("2026-03-02T10:15:30.123+01:00", DATE),
    ("2026-03-02T09:15:30Z", "2026-03-02T09:15:30.000Z"),
    ("2026-03-02T09:15:30.123456Z", DATE),
])
def test_other_iso_forms_of_the_date_are_normalized(date: str, expected: str) -> None:
    change = accept(body(action("createCard", {"board": board(), "list": LIST_TODO,
                                               "card": card()}, date=date)))
    assert change["occurred_at"] == expected


def test_origin_names_the_prefixed_topic() -> None:
    change = accept(created_body(), full_topic="tenant-a.trello.events", offset=99)
    assert change["origin"] == {"topic": "tenant-a.trello.events", "partition": 0,
                                "offset": 99}


# --------------------------------------------------------------------------------------------
# updateCard: the sub-kind comes from the keys of data.old
# --------------------------------------------------------------------------------------------

def test_rename_gives_the_new_summary() -> None:
    change = accept(rename_body())
    assert change["kind"] == "updated"
    assert change["changes"] == {"summary": "Rotate the on-call schedule weekly"}


def test_description_change_gives_the_new_description() -> None:
    change = accept(description_body())
    assert change["kind"] == "updated"
    assert change["changes"] == {"description": "Weekly shifts from **April**."}


def test_cleared_description_is_null() -> None:
    change = accept(description_body(desc="", old="Weekly shifts."))
    assert change["changes"] == {"description": None}


def test_due_set_gives_the_date() -> None:
    change = accept(due_body("2026-06-05T10:00:00.000Z"))
    assert change["kind"] == "updated"
    assert change["changes"] == {"due_date": "2026-06-05"}


def test_due_is_the_utc_date_of_the_due_time() -> None:
    change = accept(due_body("2026-06-05T01:30:00.000+05:00", "2026-06-01T10:00:00.000Z"))
    assert change["changes"] == {"due_date": "2026-06-04"}


def test_due_cleared_gives_a_null_due_date() -> None:
    change = accept(due_body(None, "2026-06-05T10:00:00.000Z"))
    assert change["kind"] == "updated"
    assert change["changes"] == {"due_date": None}


def test_unreadable_due_is_left_out_not_read_as_a_clear() -> None:
    change = accept(due_body("next friday", "2026-06-05T10:00:00.000Z"))
    assert change["kind"] == "activity"
    assert change["changes"] == {}


def test_move_gives_the_list_after_the_move() -> None:
    """A move carries listBefore/listAfter and no data.list."""
    payload = move_body()
    assert "list" not in payload["action"]["data"]
    change = accept(payload)
    assert change["kind"] == "updated"
    assert change["changes"] == {"list": "Doing"}


def test_move_without_list_after_falls_back_on_data_list() -> None:
    payload = move_body()
    data = payload["action"]["data"]
    del data["listAfter"]
    data["list"] = LIST_DOING
    assert accept(payload)["changes"] == {"list": "Doing"}


def test_archive_gives_closed_true() -> None:
    change = accept(archive_body())
    assert change["kind"] == "updated"
    assert change["changes"] == {"closed": True}


def test_unarchive_gives_closed_false() -> None:
    change = accept(archive_body(False))
    assert change["changes"] == {"closed": False}


def test_archive_without_the_new_value_is_the_opposite_of_the_old_one() -> None:
    payload = archive_body()
    del payload["action"]["data"]["card"]["closed"]
    assert accept(payload)["changes"] == {"closed": True}


def test_two_keys_changed_in_one_action_give_two_fields() -> None:
    change = accept(updated_body(
        {"name": "Rotate the rota", "idList": LIST_DOING["id"]},
        {"name": "Rotate the on-call schedule", "idList": LIST_TODO["id"]},
        listBefore=LIST_TODO, listAfter=LIST_DOING))
    assert change["kind"] == "updated"
    assert change["changes"] == {"summary": "Rotate the rota", "list": "Doing"}


def test_name_in_data_card_is_not_a_change_unless_old_names_it() -> None:
    """data.card always carries the name; only the keys of data.old changed."""
    change = accept(description_body())
    assert "summary" not in change["changes"]


@pytest.mark.parametrize("old", [{"pos": 16384}, {"dueComplete": False},
                                 {"idAttachmentCover": None}, {}])
def test_update_of_other_keys_is_activity(old: dict[str, Any]) -> None:
    change = accept(updated_body({"pos": 32768, "dueComplete": True}, old))
    assert change["kind"] == "activity"
    assert change["changes"] == {}


def test_update_without_old_is_activity() -> None:
    payload = rename_body()
    del payload["action"]["data"]["old"]
    change = accept(payload)
    assert change["kind"] == "activity"
    assert change["changes"] == {}


# --------------------------------------------------------------------------------------------
# deleteCard
# --------------------------------------------------------------------------------------------

def test_delete_card_without_a_name_is_a_deleted_change() -> None:
    change = accept(deleted_body())
    assert change["kind"] == "deleted"
    assert change["changes"] == {}
    assert change["task_id"] == TASK_ID
    assert change["source_key"] == SHORT_LINK


# --------------------------------------------------------------------------------------------
# Members, comments, check items: activity by the action's creator
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("action_type", ["addMemberToCard", "removeMemberFromCard"])
def test_member_change_is_activity_by_the_creator_not_the_affected_member(
        action_type: str) -> None:
    change = accept(member_body(action_type))
    assert change["kind"] == "activity"
    assert change["changes"] == {}
    assert change["author"] == {"kind": "user", "id": ADA_ID, "name": "Ada Lovelace",
                                "source": "trello"}
    assert change["upstream_event"] == action_type


def test_comment_is_activity_by_the_commenter() -> None:
    change = accept(comment_body())
    assert change["kind"] == "activity"
    assert change["changes"] == {}
    assert change["author"]["id"] == BOB_ID
    assert change["author"]["name"] == "Bob Builder"


def test_check_item_state_is_activity() -> None:
    change = accept(check_item_body())
    assert change["kind"] == "activity"
    assert change["changes"] == {}
    assert change["task_id"] == TASK_ID


# --------------------------------------------------------------------------------------------
# Authors and identity
# --------------------------------------------------------------------------------------------

def test_author_is_the_member_creator() -> None:
    assert accept(rename_body())["author"] == {"kind": "user", "id": ADA_ID,
                                               "name": "Ada Lovelace", "source": "trello"}


def test_author_name_falls_back_on_the_username() -> None:
    payload = rename_body()
    payload["action"]["memberCreator"]["fullName"] = ""
    assert accept(payload)["author"]["name"] == "adalovelace"


def test_author_without_member_creator_object_has_no_name() -> None:
    payload = rename_body()
    del payload["action"]["memberCreator"]
    assert accept(payload)["author"] == {"kind": "user", "id": ADA_ID, "name": None,
                                         "source": "trello"}


def test_action_without_creator_is_by_the_technical_user() -> None:
    payload = rename_body()
    del payload["action"]["memberCreator"]
    del payload["action"]["idMemberCreator"]
    assert accept(payload)["author"] == {"kind": "technical", "id": None, "name": None,
                                         "source": "trello"}


def test_card_without_board_or_short_link_has_no_project_or_source_key() -> None:
    payload = rename_body()
    del payload["action"]["data"]["board"]
    del payload["action"]["data"]["card"]["shortLink"]
    change = accept(payload)
    assert change["project"] is None
    assert change["source_key"] is None


def test_action_without_id_gets_a_stable_hashed_event_id() -> None:
    payload = rename_body()
    del payload["action"]["id"]
    first, second = accept(payload), accept(copy.deepcopy(payload), offset=8)
    assert first["event_id"] == second["event_id"]
    assert first["event_id"]
    assert first["tiebreak"] == ""


def test_later_action_ids_sort_after_earlier_ones() -> None:
    """ObjectIds start with the creation second, so the tiebreak orders by time."""
    earlier = accept(body(action("createCard", {"board": board(), "list": LIST_TODO,
                                                "card": card()},
                                 action_id="65e2ee2a1f2e3d4c5b6a7980")))
    later = accept(body(action("createCard", {"board": board(), "list": LIST_TODO,
                                              "card": card()},
                               action_id="65e2ee2b0000000000000001")))
    assert earlier["tiebreak"] < later["tiebreak"]


def test_the_result_does_not_depend_on_the_watched_model() -> None:
    """A card webhook and a board webhook deliver the same action with different models."""
    on_board = rename_body()
    on_card = copy.deepcopy(on_board)
    on_card["model"] = card(name="Rotate the on-call schedule weekly", idBoard=BOARD_ID,
                            idList=LIST_TODO["id"], closed=False, desc="")
    assert accept(on_board) == accept(on_card)


# --------------------------------------------------------------------------------------------
# Text cleaning
# --------------------------------------------------------------------------------------------

def test_nul_and_control_characters_are_removed() -> None:
    payload = updated_body({"name": "Rotate\x00 the\x07 rota", "desc": "line one\nline\ttwo\x00"},
                           {"name": "x", "desc": "y"})
    payload["action"]["memberCreator"]["fullName"] = "Ada\x00 Lovelace"
    payload["action"]["data"]["card"]["shortLink"] = "aB3d\x00E5fG"
    change = accept(payload)
    assert change["changes"] == {"summary": "Rotate the rota",
                                 "description": "line one\nline\ttwo"}
    assert change["author"]["name"] == "Ada Lovelace"
    assert change["source_key"] == SHORT_LINK
    assert b"\\u0000" not in orjson.dumps(change)


def test_control_characters_in_list_names_and_ids_are_removed() -> None:
    payload = move_body()
    payload["action"]["data"]["listAfter"] = {"id": LIST_DOING["id"], "name": "Do\x1bing"}
    payload["action"]["data"]["card"]["id"] = CARD_ID + "\x00"
    change = accept(payload)
    assert change["changes"] == {"list": "Doing"}
    assert change["task_id"] == TASK_ID


def test_lone_surrogates_are_replaced() -> None:
    """orjson refuses them on decode, but normalize() takes any decoded object."""
    payload = updated_body({"name": "Rotate \ud800 rota"}, {"name": "x"})
    result = trello.normalize(payload, record(b"{}"), CONFIG)
    assert isinstance(result, Accepted)
    assert result.change["changes"] == {"summary": "Rotate \ufffd rota"}
    orjson.dumps(result.change)


# --------------------------------------------------------------------------------------------
# Passed over
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("action_type", ["updateList", "createList", "addLabelToCard",
                                         "addAttachmentToCard", "updateBoard", "copyCard"])
def test_other_action_types_are_passed_over(action_type: str) -> None:
    payload = body(action(action_type, {"board": board(), "list": LIST_TODO}))
    result = ingest(record(payload), CONFIG)
    assert isinstance(result, PassedOver)
    assert result == PassedOver("unhandled_event", action_type)


def test_unhandled_action_is_passed_over_even_when_it_is_malformed() -> None:
    """The type decides first: an unknown type is not a dead letter for lacking a card."""
    result = ingest(record({"action": {"type": "updateBoard", "date": "soon"}}), CONFIG)
    assert result == PassedOver("unhandled_event", "updateBoard")


# --------------------------------------------------------------------------------------------
# Rejections → dead letters
# --------------------------------------------------------------------------------------------

def _mutated(build: Any, mutate: Any) -> bytes:
    payload = build()
    mutate(payload["action"])
    return json.dumps(payload).encode()


REJECTIONS: list[tuple[str, Any, str]] = [
    ("no-action", json.dumps({"model": board()}).encode(), "missing_action"),
    ("action-null", json.dumps({"action": None, "model": board()}).encode(), "missing_action"),
    ("action-list", json.dumps({"action": [], "model": board()}).encode(), "missing_action"),
    ("no-type", _mutated(rename_body, lambda a: a.pop("type")), "missing_event"),
    ("empty-type", _mutated(rename_body, lambda a: a.update(type="")), "missing_event"),
    ("number-type", _mutated(rename_body, lambda a: a.update(type=3)), "missing_event"),
    ("no-data", _mutated(rename_body, lambda a: a.pop("data")), "missing_card_id"),
    ("no-card", _mutated(rename_body, lambda a: a["data"].pop("card")), "missing_card_id"),
    ("no-card-id", _mutated(deleted_body, lambda a: a["data"]["card"].pop("id")),
     "missing_card_id"),
    ("empty-card-id", _mutated(comment_body, lambda a: a["data"]["card"].update(id="")),
     "missing_card_id"),
    ("null-card-id", _mutated(created_body, lambda a: a["data"]["card"].update(id=None)),
     "missing_card_id"),
    ("no-date", _mutated(rename_body, lambda a: a.pop("date")), "invalid_timestamp"),
    ("date-epoch-ms", _mutated(rename_body, lambda a: a.update(date=1772442930123)),
     "invalid_timestamp"),
    ("date-epoch-ms-string", _mutated(rename_body, lambda a: a.update(date="1772442930123")),
     "invalid_timestamp"),
    ("date-garbage", _mutated(rename_body, lambda a: a.update(date="yesterday")),
     "invalid_timestamp"),
    ("date-no-zone", _mutated(rename_body, lambda a: a.update(date="2026-03-02T09:15:30.123")),
     "invalid_timestamp"),
    ("date-month-13", _mutated(rename_body, lambda a: a.update(date="2026-13-02T09:15:30.123Z")),
     "invalid_timestamp"),
    ("date-absurd", _mutated(rename_body, lambda a: a.update(date="1970-01-01T00:00:00.000Z")),
     "invalid_timestamp"),
    ("date-null", _mutated(rename_body, lambda a: a.update(date=None)), "invalid_timestamp"),
]


@pytest.mark.parametrize(("value", "reason"), [case[1:] for case in REJECTIONS],
                         ids=[case[0] for case in REJECTIONS])
def test_broken_bodies_are_rejected_with_a_reason(value: bytes, reason: str) -> None:
    rejected = reject(value)
    assert rejected.reason == reason
    assert rejected.message


@pytest.mark.parametrize(("value", "reason"), [case[1:] for case in REJECTIONS],
                         ids=[case[0] for case in REJECTIONS])
def test_every_rejection_makes_a_valid_dead_letter(value: bytes, reason: str) -> None:
    raw = record(value, offset=42)
    rejected = ingest(raw, CONFIG)
    assert isinstance(rejected, Rejected)
    letter = DeadLetter.model_validate(dead_letter(raw, rejected, "ingest", NOW))
    assert letter.error.type == reason
    assert letter.source_topic == "trello.events"
    assert (letter.partition, letter.offset, letter.key) == (0, 42, CARD_ID)
    assert base64.b64decode(letter.value or "") == value


# --------------------------------------------------------------------------------------------
# Contract and documentation models
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build", list(VALID_BODIES.values()), ids=list(VALID_BODIES))
def test_every_valid_body_is_accepted_as_a_contract_change_event(build: Any) -> None:
    change = accept(build())
    event = ChangeEvent.model_validate(change)
    assert event.source == "trello"
    assert event.task_id == TASK_ID
    assert event.occurred_at == OCCURRED
    assert set(change) == {"schema_version", "event_id", "task_id", "source", "source_key",
                           "project", "kind", "occurred_at", "author", "changes", "origin",
                           "tiebreak", "upstream_event"}


@pytest.mark.parametrize("build", list(VALID_BODIES.values()), ids=list(VALID_BODIES))
def test_the_upstream_model_parses_every_body(build: Any) -> None:
    payload = build()
    parsed = Body.model_validate(payload)
    assert parsed.action.id == ACTION_ID
    assert parsed.action.type == payload["action"]["type"]
    assert parsed.action.date == OCCURRED
    assert parsed.action.data.card is not None
    assert parsed.action.data.card.id == CARD_ID
    assert parsed.action.data.board is not None
    assert parsed.action.data.board.id == BOARD_ID


def test_the_upstream_model_keeps_unknown_fields_and_documents_the_move() -> None:
    parsed = Body.model_validate(move_body())
    data = parsed.action.data
    assert data.list is None
    assert data.listAfter is not None
    assert data.listAfter.name == "Doing"
    assert data.old == {"idList": LIST_TODO["id"]}
    assert parsed.action.memberCreator is not None
    assert parsed.action.memberCreator.model_extra == {
        key: value for key, value in member().items()
        if key not in ("id", "username", "fullName", "initials", "avatarHash")}


def test_the_upstream_model_of_a_deleted_card_has_no_name() -> None:
    card_model = Body.model_validate(deleted_body()).action.data.card
    assert card_model is not None
    assert card_model.name is None
    assert card_model.idShort == 42


def test_the_upstream_model_tells_the_affected_member_from_the_author() -> None:
    parsed = Body.model_validate(member_body("addMemberToCard")).action
    assert parsed.member is not None
    assert parsed.member.id == BOB_ID
    assert parsed.idMemberCreator == ADA_ID
    assert parsed.data.idMember == BOB_ID


def test_normalize_can_be_called_directly_on_a_decoded_body() -> None:
    result = trello.normalize(created_body(), record(b"{}"), CONFIG)
    assert isinstance(result, Accepted)
    assert result.change["kind"] == "created"


# --------------------------------------------------------------------------------------------
# Property: any JSON object on trello.events gives one of the three outcomes, never raises
# --------------------------------------------------------------------------------------------

_json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
                 | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8)
_ids = st.sampled_from([CARD_ID, BOARD_ID, ADA_ID, "", "\x00"]) | _json_values
_names = st.text(max_size=10) | _json_values
_dates = (st.sampled_from([DATE, "2026-03-02T09:15:30Z", "2026-03-02", "0001-01-01T00:00:00+01:00",
                           "9999-12-31T23:59:59.999-01:00", "2026-03-02T09:15:30.123Z\x00",
                           "2026-13-02T09:15:30.123Z", "yesterday"])
          | st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.isoformat())
          | _json_values)
_lists = _json_values | st.fixed_dictionaries({}, optional={"id": _ids, "name": _names})
_cards = _json_values | st.fixed_dictionaries({}, optional={
    "id": _ids, "name": _names, "shortLink": _names, "desc": _names, "closed": _json_values,
    "due": _dates, "idList": _ids})
_olds = _json_values | st.dictionaries(
    st.sampled_from(["name", "desc", "due", "idList", "closed", "pos"]), _json_values,
    max_size=4)
_data = _json_values | st.fixed_dictionaries({}, optional={
    "board": _json_values | st.fixed_dictionaries({}, optional={"id": _ids}),
    "card": _cards, "list": _lists, "listBefore": _lists, "listAfter": _lists, "old": _olds,
    "idMember": _ids, "text": _names})
_types = st.sampled_from([*trello.CARD_ACTION_KINDS, "updateList"]) | _json_values
_actions = _json_values | st.fixed_dictionaries({}, optional={
    "id": _ids, "type": _types, "date": _dates, "data": _data, "idMemberCreator": _ids,
    "memberCreator": _json_values | st.fixed_dictionaries({}, optional={
        "id": _ids, "fullName": _names, "username": _names}),
    "member": _json_values})
# Plausible actions: type, date and card id are right, so the messy parts reach the mapping.
_plausible_actions = st.fixed_dictionaries(
    {"type": st.sampled_from(list(trello.CARD_ACTION_KINDS)),
     "date": st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31),
                          timezones=st.just(UTC)).map(lambda moment: moment.isoformat()),
     "data": st.fixed_dictionaries(
         {"card": st.fixed_dictionaries({"id": st.text(min_size=1, max_size=24)}, optional={
             "name": _names, "shortLink": _names, "desc": _names, "closed": _json_values,
             "due": _dates, "idList": _ids})},
         optional={"board": _json_values | st.fixed_dictionaries({"id": _ids}),
                   "list": _lists, "listBefore": _lists, "listAfter": _lists, "old": _olds})},
    optional={"id": _ids, "idMemberCreator": _ids, "memberCreator": _json_values
              | st.fixed_dictionaries({}, optional={"id": _ids, "fullName": _names,
                                                    "username": _names})})
_bodies = (st.dictionaries(st.text(max_size=6), _json_values, max_size=3)
           | st.fixed_dictionaries({"action": _actions}, optional={"model": _json_values})
           | st.fixed_dictionaries({"action": _plausible_actions},
                                   optional={"model": _json_values}))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=_bodies)
def test_any_json_object_on_trello_events_gives_an_outcome_and_never_raises(
        payload: dict[str, Any]) -> None:
    result = ingest(record(json.dumps(payload).encode()), IngestConfig())
    assert isinstance(result, Accepted | Reference | PassedOver | Rejected)
    if isinstance(result, Accepted):
        ChangeEvent.model_validate(result.change)
        orjson.dumps(result.change)
        assert result.change["task_id"].startswith("trello:")
        assert all(clean_text(text) == text for text in _strings(result.change))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []
