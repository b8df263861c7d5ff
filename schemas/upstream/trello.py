"""Trello webhook bodies as boxsync reads them (upstream-formats.md section C).

Documentation and test models only: the hot path (`processors.ingest.trello`) reads the
decoded JSON with plain dict access. Every model is lenient (`extra="allow"`, most fields
optional), because Trello adds fields over time and the action type decides which appear.

Each POST body is `{"action": {...}, "model": {...}}`: `action` is what changed, `model` the
watched object (board, list, card or member) after the change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TrelloModel(BaseModel):
    """Common settings: unknown fields are kept, nothing is frozen or coerced away."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Member(TrelloModel):
    """`action.memberCreator` (the author) or `action.member` (the affected member)."""

    id: str = Field(description="24-hex member id")
    username: str | None = None
    fullName: str | None = None
    initials: str | None = None
    avatarHash: str | None = None


class Board(TrelloModel):
    """`data.board`: on every card action."""

    id: str = Field(description="24-hex board id; the task's project is `trello:<id>`")
    name: str | None = None
    shortLink: str | None = None


class List(TrelloModel):
    """`data.list`, `data.listBefore`, `data.listAfter` (a Trello list, i.e. a column)."""

    id: str
    name: str | None = None


class Card(TrelloModel):
    """`data.card`: its identity plus the new value of each key the action changed.

    `deleteCard` carries only `id`, `idShort` and `shortLink` (no name).
    """

    id: str = Field(description="24-hex card id; the task id is `trello:<id>`")
    idShort: int | None = Field(None, description="the card number on its board")
    shortLink: str | None = Field(None, description="the task's source_key")
    name: str | None = None
    desc: str | None = None
    due: datetime | None = Field(None, description="ISO-8601 UTC date-time, or null")
    idList: str | None = None
    closed: bool | None = Field(None, description="true when the card is archived")


class CheckItem(TrelloModel):
    id: str
    name: str | None = None
    state: Literal["complete", "incomplete"] | None = None


class Checklist(TrelloModel):
    id: str
    name: str | None = None


class ActionData(TrelloModel):
    """`action.data`: which keys appear depends on `action.type` (upstream-formats.md C3)."""

    board: Board | None = None
    card: Card | None = None
    list: List | None = Field(None, description="absent on a move (updateCard with old.idList)")
    listBefore: List | None = None
    listAfter: List | None = None
    old: dict[str, Any] | None = Field(
        None, description="updateCard: the previous value of each changed key; its keys "
                          "(name, desc, due, idList, closed, ...) tell what changed")
    idMember: str | None = Field(
        None, description="addMemberToCard/removeMemberFromCard: the affected member")
    deactivated: bool | None = None
    text: str | None = Field(None, description="commentCard: the comment text")
    checkItem: CheckItem | None = None
    checklist: Checklist | None = None


class Display(TrelloModel):
    """`action.display`: presentational (`translationKey`, `entities`); not read by boxsync."""

    translationKey: str | None = None
    entities: dict[str, Any] | None = None


class Action(TrelloModel):
    """`action`: one change on Trello."""

    id: str = Field(description="24-hex ObjectId: the event id and the tie-breaker")
    idMemberCreator: str | None = Field(None, description="the author")
    type: str = Field(description="createCard, updateCard, deleteCard, commentCard, ...")
    date: datetime = Field(description="ISO-8601 UTC with milliseconds, not epoch ms")
    data: ActionData = Field(default_factory=ActionData)
    memberCreator: Member | None = None
    member: Member | None = Field(
        None, description="addMemberToCard/removeMemberFromCard: the affected member, "
                          "not the author")
    display: Display | None = None
    appCreator: dict[str, Any] | None = None
    limits: dict[str, Any] | None = None


class Body(TrelloModel):
    """A Trello webhook POST body, as carried by `trello.events`."""

    action: Action
    model: dict[str, Any] | None = Field(
        None, description="the watched object (board, list, card or member) after the change")
