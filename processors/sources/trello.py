"""Trello as a task source: the cards of a box scope's boards, over the REST API.

`GET /1/boards/{board}/cards` with `filter=all` (archived cards too: they are tasks with
`closed: true`, as an archive seen by the webhooks makes them), `fields` (only what the
normalized fields need, plus `dateLastActivity`, the card's last-updated time) and paging:
Trello answers at most `limit` cards (1000 at most), the newest first, and `before=<card id>`
asks for the cards created before that one. Card ids are ObjectIds whose first 8 hex digits
are the creation second, so the smallest id of a page is where the next page starts; a page
shorter than the limit is the last.

Trello accepts the API key and token as the query parameters `key` and `token`; they are sent
so, and therefore no URL of this module is ever logged or put in a message (the HTTP client
names the path only, and scrubs both values from error excerpts).

List names come from `GET /1/boards/{board}/lists?filter=all` (one request per board and full
listing), since a card holds only its list's id.

Every request goes through the source's `Limiter` when it has one (processors.sources.limiter:
the API key's and the token's buckets, and `/1/members/`'s, shared in PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from processors.ingest.text import clean_text
from processors.ingest.trello import card_snapshot
from processors.sources.http import HttpClient, Service, checked_base_url
from processors.sources.limiter import Limiter
from processors.sources.limits import Call, Priority
from processors.sources.model import SourcePage, SourceTask, SourceUnavailable, epoch_of_iso

# The card fields behind the normalized ones (ingest's createCard rules, plus labels), and the
# identity and time fields every listing needs.
IDENTITY_FIELDS = ("id", "shortLink", "idBoard", "dateLastActivity")
CARD_FIELDS = (*IDENTITY_FIELDS, "name", "desc", "due", "closed", "idList", "labels")
MAX_PAGE_SIZE = 1000
_OBJECT_ID_HEX = 24


class TrelloSource:
    """The cards of Trello boards, as `SourceTask`s (see the module docstring)."""

    def __init__(self, base_url: str = "https://api.trello.com", *, key: str,
                 token: str | SecretStr, page_size: int = 500, card_filter: str = "all",
                 http: HttpClient | None = None, limiter: Limiter | None = None) -> None:
        self.base_url, _host = checked_base_url(base_url, "the Trello API URL")
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        if not key or not secret:
            raise ValueError("Trello credentials missing: set BOXSYNC_TRELLO_KEY and "
                             "BOXSYNC_TRELLO_TOKEN")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"Trello page size must be 1 to {MAX_PAGE_SIZE}, got {page_size}")
        self.page_size = page_size
        self.card_filter = card_filter
        self._auth = {"key": key, "token": secret}
        self._http = http or HttpClient()
        self.limiter = limiter
        self.key, self.token = key, secret  # the limiter's fingerprints; never logged
        self._service = Service(
            "Trello", "check BOXSYNC_TRELLO_KEY and BOXSYNC_TRELLO_TOKEN, and that this member "
            "can see the box's boards", "check the box's Trello board ids", (key, secret))

    def __repr__(self) -> str:  # no credentials
        return f"TrelloSource({self.base_url!r})"

    def iter_pages(self, trello_boards: Iterable[str], priority: Priority = Priority.FULL
                   ) -> Iterator[SourcePage]:
        """Every card of the boards with its normalized fields, each exactly once."""
        seen: set[str] = set()
        for board in _boards(trello_boards):
            lists = self._list_names(board, priority)
            for cards in self._card_pages(board, CARD_FIELDS, priority):
                yield self._page(cards, board, seen, lists)

    def iter_updated(self, trello_boards: Iterable[str],
                     priority: Priority = Priority.INCREMENTAL) -> Iterator[SourcePage]:
        """The same cards with `dateLastActivity` only (`fields` empty), for incremental sync."""
        seen: set[str] = set()
        for board in _boards(trello_boards):
            for cards in self._card_pages(board, IDENTITY_FIELDS, priority):
                yield self._page(cards, board, seen, None)

    def request(self, method: str, path: str, *, endpoint: str,
                priority: Priority = Priority.INCREMENTAL,
                params: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        """One request to the REST API (`path` from /1/...), with the key and token, through
        the limiter as the call `endpoint` (`members` for /1/members/...)."""
        call = Call("trello", endpoint, method, priority)
        gate = self.limiter.gate(call) if self.limiter is not None else None
        return self._http.request_json(self._service, method, self.base_url + path,
                                       params={**(params or {}), **self._auth}, body=body,
                                       gate=gate)

    def _page(self, cards: list[Any], board: str, seen: set[str],
              lists: Mapping[str, str] | None) -> SourcePage:
        tasks = [self._task(card, board, lists) for card in cards]
        # A card moved from one scope board to another while paging is listed once.
        fresh = [task for task in tasks if task.task_id not in seen]
        seen.update(task.task_id for task in fresh)
        return SourcePage(fresh, None)

    def _card_pages(self, board: str, fields: Iterable[str], priority: Priority
                    ) -> Iterator[list[Any]]:
        before: str | None = None
        path = f"/1/boards/{quote(board, safe='')}/cards"
        while True:
            params = {"filter": self.card_filter, "fields": ",".join(fields),
                      "limit": self.page_size}
            if before is not None:
                params["before"] = before
            cards = self._get_list(path, params, "board_cards", priority)
            yield cards
            # Same-width hex ids order like the numbers they are, once in one case.
            oldest = min((_card_id(card).lower() for card in cards), default=None)
            if len(cards) < self.page_size or oldest is None:
                return
            if before is not None and oldest >= before:
                raise self._malformed(path, "a page that does not go back in time")
            before = oldest

    def _list_names(self, board: str, priority: Priority) -> dict[str, str]:
        path = f"/1/boards/{quote(board, safe='')}/lists"
        lists = self._get_list(path, {"filter": "all", "fields": "name"}, "board_lists",
                               priority)
        return {item["id"]: clean_text(item["name"]) for item in lists
                if isinstance(item, dict) and isinstance(item.get("id"), str)
                and isinstance(item.get("name"), str)}

    def _task(self, card: Any, board: str, lists: Mapping[str, str] | None) -> SourceTask:
        card_id = _card_id(card)
        updated_at = _updated_at(card, card_id)
        board_id = card.get("idBoard") if isinstance(card.get("idBoard"), str) else board
        short_link = card.get("shortLink")
        fields = _fields(card, lists) if lists is not None else {}
        return SourceTask(f"trello:{card_id}", "trello",
                          clean_text(short_link) if isinstance(short_link, str) else None,
                          f"trello:{board_id}", updated_at, fields)

    def _get_list(self, path: str, params: Mapping[str, Any], endpoint: str,
                  priority: Priority) -> list[Any]:
        answer = self.request("GET", path, endpoint=endpoint, priority=priority,
                              params=params)
        if not isinstance(answer, list):
            raise self._malformed(path, "an answer that is not a JSON list")
        return answer

    def _malformed(self, path: str, what: str) -> SourceUnavailable:
        return SourceUnavailable(f"Trello {path} answered with {what}; "
                                 "run the sync again later")


def _fields(card: Mapping[str, Any], lists: Mapping[str, str]) -> dict[str, Any]:
    """The createCard fields of ingest (summary, list, description, due_date, closed) and the
    card's label names (a label without a name by its colour), sorted like Jira's."""
    id_list = card.get("idList")
    fields = card_snapshot(dict(card), lists.get(id_list) if isinstance(id_list, str) else None)
    labels = card.get("labels")
    if isinstance(labels, list):
        names = {label.get("name") or label.get("color") for label in labels
                 if isinstance(label, dict)}
        fields["labels"] = sorted(clean_text(name) for name in names if isinstance(name, str))
    return fields


def _card_id(card: Any) -> str:
    card_id = card.get("id") if isinstance(card, dict) else None
    if not isinstance(card_id, str) or not card_id:
        raise SourceUnavailable("Trello listed a card without an id; run the sync again later")
    return clean_text(card_id)


def _updated_at(card: Mapping[str, Any], card_id: str) -> float:
    """`dateLastActivity`, else the creation second held in the card id (never later than
    any activity, so an incremental sync sees the card as changed rather than miss it)."""
    moment = epoch_of_iso(card.get("dateLastActivity"))
    if moment is not None:
        return moment
    if len(card_id) == _OBJECT_ID_HEX:
        try:
            return float(int(card_id[:8], 16))
        except ValueError:
            pass
    raise SourceUnavailable(f"Trello listed card {card_id} without a readable "
                            "dateLastActivity; run the sync again later")


def _boards(trello_boards: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(board for board in trello_boards if board))
