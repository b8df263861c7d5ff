"""A local HTTP server that answers like Jira Cloud, Jira Data Center and Trello.

It serves, on 127.0.0.1 and a free port, the few REST resources the task sources read, in the
documented shapes:

| request                                      | answer                                           |
|----------------------------------------------|--------------------------------------------------|
| `GET /rest/api/3/search/jql` (basic auth)    | `{issues, nextPageToken?, isLast}`; the last page |
|                                              | carries no `nextPageToken` (as Cloud does)        |
| `POST /rest/api/3/search/approximate-count`  | `{count}`                                         |
| `GET /rest/api/2/search` (bearer PAT)        | `{startAt, maxResults, total, issues}`            |
| `GET /1/boards/{id}/cards` (key, token)      | the cards, newest id first, `before`/`limit`/     |
|                                              | `filter`/`fields` applied                         |
| `GET /1/boards/{id}/lists` (key, token)      | `[{id, name}]`                                    |
| `PUT /rest/api/3/issue/{id}` (basic auth)    | 204, the body recorded (a write-back)             |
| the webhook resources of Jira and Trello     | see `tests/support/fake_webhooks.py`              |

The JQL is understood only as far as the sources write it: `project in ("A", ...)` and
`labels = "x"` select issues; anything else (the box's own JQL) is recorded, not evaluated.
Issues are ordered by key; `fields` keeps only the requested fields of each issue.

Tests hold the data (`issues`, `cards`, `lists`), script failures by request number
(`fail(2, 429, headers={"Retry-After": "1"})`, `drop(3)` to close the connection without an
answer, `stall(4, 0.3)` to answer late, `fail_always(500)`), cap page sizes
(`max_results_cap`) and read `requests`, the log of every request with its decoded
parameters, headers and body.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.support import fake_webhooks

_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_PROJECTS = re.compile(r"project in \(([^)]*)\)")
_LABEL = re.compile(r'labels = "((?:[^"\\]|\\.)*)"')
_BOARD_PATH = re.compile(r"^/1/boards/([^/]+)/(cards|lists)$")
_ISSUE_PATH = re.compile(r"^/rest/api/3/issue/([^/]+)$")


@dataclass(frozen=True)
class RecordedRequest:
    number: int  # 1-based, over every request the server received
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]  # names in lower case
    body: Any  # the decoded JSON body, or None


@dataclass(frozen=True)
class Scripted:
    """An answer that replaces the normal one; `drop` closes the connection instead, and
    `stall` waits that many seconds before the normal answer (a client timeout)."""

    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"errorMessages":["scripted failure"]}'
    drop: bool = False
    stall: float = 0.0


@dataclass
class FakeSources:
    """The server and its data; use as a context manager (it starts and stops the thread)."""

    jira_email: str = "bot@example.com"
    jira_api_token: str = "cloud-api-token-s3cr3t"
    jira_pat: str = "dc-pat-s3cr3t"
    trello_key: str = "trello-key-0123"
    trello_token: str = "trello-token-s3cr3t"
    issues: list[dict[str, Any]] = field(default_factory=list)
    cards: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # board id → cards
    lists: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # board id → lists
    max_results_cap: int | None = None  # the server's own page-size limit
    # Webhooks (tests/support/fake_webhooks.py): Jira's by numeric id, Trello's by id, the
    # deliveries that failed their last retry, the clock of expiry dates.
    jira_webhooks: dict[int, dict[str, Any]] = field(default_factory=dict)
    trello_webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed_webhooks: list[dict[str, Any]] = field(default_factory=list)
    next_webhook_id: int = 10000
    now: float = field(default_factory=time.time)
    dynamic_webhooks_forbidden: bool = False  # Jira's 403 for a caller that is not an app
    requests: list[RecordedRequest] = field(default_factory=list)
    _scripted: dict[int, Scripted] = field(default_factory=dict)
    _always: Scripted | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> FakeSources:
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, "use FakeSources as a context manager"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- scripting --------------------------------------------------------------------------

    def fail(self, number: int, status: int, *, headers: dict[str, str] | None = None,
             body: bytes | None = None) -> None:
        """Answer request `number` (1-based) with `status` instead of the normal answer."""
        self._scripted[number] = Scripted(status, headers or {}, body or Scripted.body)

    def drop(self, number: int) -> None:
        """Close the connection of request `number` without answering."""
        self._scripted[number] = Scripted(drop=True)

    def stall(self, number: int, seconds: float) -> None:
        """Answer request `number` normally, but only after `seconds`."""
        self._scripted[number] = Scripted(stall=seconds)

    def fail_always(self, status: int, *, headers: dict[str, str] | None = None,
                    body: bytes | None = None) -> None:
        self._always = Scripted(status, headers or {}, body or Scripted.body)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == path]

    # -- serving (called by the handler threads) --------------------------------------------

    def record(self, method: str, target: str, headers: dict[str, str], body: Any
               ) -> tuple[RecordedRequest, Scripted | None]:
        parts = urlsplit(target)
        with self._lock:
            number = len(self.requests) + 1
            request = RecordedRequest(number, method, parts.path,
                                      dict(parse_qsl(parts.query, keep_blank_values=True)),
                                      headers, body)
            self.requests.append(request)
            return request, self._scripted.get(number) or self._always

    def answer(self, request: RecordedRequest) -> tuple[int, Any]:
        """(status, JSON value or raw bytes) of the normal answer to a request."""
        route = (request.method, request.path)
        if route == ("GET", "/rest/api/3/search/jql"):
            return self._jira(request, "cloud", self._cloud_search)
        if route == ("POST", "/rest/api/3/search/approximate-count"):
            return self._jira(request, "cloud", self._cloud_count)
        if route == ("GET", "/rest/api/2/search"):
            return self._jira(request, "datacenter", self._dc_search)
        if fake_webhooks.handles(request.path):
            return fake_webhooks.answer(self, request)
        if request.method == "PUT" and _ISSUE_PATH.match(request.path):
            return self._jira(request, "cloud", lambda _request: b"")
        board = _BOARD_PATH.match(request.path)
        if request.method == "GET" and board:
            return self._trello(request, board.group(1), board.group(2))
        return 404, {"errorMessages": [f"no route {request.method} {request.path}"]}

    # -- Jira -------------------------------------------------------------------------------

    def _jira(self, request: RecordedRequest, deployment: str, handler: Any) -> tuple[int, Any]:
        if request.headers.get("authorization") != self.jira_authorization(deployment):
            return 401, b"Client must be authenticated to access this resource."
        return 200, handler(request)

    def jira_authorization(self, deployment: str) -> str:
        if deployment == "datacenter":
            return f"Bearer {self.jira_pat}"
        pair = f"{self.jira_email}:{self.jira_api_token}".encode()
        return f"Basic {base64.b64encode(pair).decode()}"

    def _cloud_search(self, request: RecordedRequest) -> dict[str, Any]:
        selected = self._select(request.params.get("jql", ""))
        if request.params.get("jql", "").endswith("ORDER BY updated DESC"):
            selected.sort(key=lambda issue: str(issue.get("fields", {}).get("updated")),
                          reverse=True)
        start = _token_offset(request.params.get("nextPageToken"))
        size = self._page_size(request.params.get("maxResults"), default=50)
        page = selected[start:start + size]
        answer: dict[str, Any] = {"issues": [_shown(issue, request) for issue in page]}
        if start + size < len(selected):
            answer["nextPageToken"] = _offset_token(start + size)
        answer["isLast"] = start + size >= len(selected)
        return answer

    def _cloud_count(self, request: RecordedRequest) -> dict[str, Any]:
        jql = request.body.get("jql", "") if isinstance(request.body, dict) else ""
        return {"count": len(self._select(jql))}

    def _dc_search(self, request: RecordedRequest) -> dict[str, Any]:
        selected = self._select(request.params.get("jql", ""))
        start = int(request.params.get("startAt", "0"))
        size = self._page_size(request.params.get("maxResults"), default=50)
        page = selected[start:start + size]
        return {"startAt": start, "maxResults": size, "total": len(selected),
                "issues": [_shown(issue, request) for issue in page]}

    def _select(self, jql: str) -> list[dict[str, Any]]:
        projects_clause = _PROJECTS.search(jql)
        projects = set(_QUOTED.findall(projects_clause.group(1))) if projects_clause else set()
        labels = set(_LABEL.findall(jql))
        chosen = [issue for issue in self.issues if _project_of(issue) in projects
                  and labels <= set(issue.get("fields", {}).get("labels") or ())]
        return sorted(chosen, key=_key_order)

    def _page_size(self, asked: str | None, *, default: int) -> int:
        size = int(asked) if asked else default
        return min(size, self.max_results_cap) if self.max_results_cap else size

    # -- Trello -----------------------------------------------------------------------------

    def _trello(self, request: RecordedRequest, board: str, resource: str) -> tuple[int, Any]:
        if request.params.get("key") != self.trello_key:
            return 401, b"invalid key"
        if request.params.get("token") != self.trello_token:
            return 401, b"invalid token"
        if resource == "lists":
            return 200, [{"id": item["id"], "name": item["name"]}
                         for item in self.lists.get(board, [])]
        if board not in self.cards:
            return 404, b"The requested resource was not found."
        return 200, self._card_page(request, self.cards[board])

    def _card_page(self, request: RecordedRequest, cards: list[dict[str, Any]]
                   ) -> list[dict[str, Any]]:
        params = request.params
        chosen = [card for card in cards if _card_filter(card, params.get("filter", "visible"))]
        chosen.sort(key=lambda card: card["id"], reverse=True)  # newest first
        if "before" in params:
            chosen = [card for card in chosen if card["id"] < params["before"]]
        chosen = chosen[:int(params.get("limit", "1000"))]
        wanted = set(params.get("fields", "all").split(",")) | {"id"}
        return [{name: value for name, value in card.items()
                 if "all" in wanted or name in wanted} for card in chosen]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 fake: FakeSources) -> None:
        super().__init__(address, handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read `requests` instead

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        request, scripted = self.server.fake.record(
            method, self.path, headers, json.loads(raw) if raw else None)
        if scripted is not None and scripted.drop:
            self.close_connection = True
            return
        if scripted is not None and scripted.stall:
            time.sleep(scripted.stall)
            scripted = None
        if scripted is not None:
            self._send(scripted.status, scripted.body, scripted.headers)
            return
        status, value = self.server.fake.answer(request)
        if status == 200 and value == b"":
            status = 204  # No Content, as Jira answers a write
        self._send(status, value if isinstance(value, bytes) else json.dumps(value).encode())

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        kind = "application/json" if body[:1] in (b"{", b"[") else "text/plain"
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


# -- data builders --------------------------------------------------------------------------

def jira_issue(issue_id: int | str, key: str, *, site: str = "acme.atlassian.net",
               api: int = 3, **fields: Any) -> dict[str, Any]:
    """An issue as the search answers it: `fields` given as keyword arguments (Jira's names;
    `project` defaults from the key)."""
    fields.setdefault("project", {"key": key.rsplit("-", 1)[0], "id": "10000"})
    return {"id": issue_id, "key": key, "self": f"https://{site}/rest/api/{api}/issue/{issue_id}",
            "fields": fields}


def object_id(seconds: int, serial: int) -> str:
    """A Trello id: the creation second in 8 hex digits, then 16 more."""
    return f"{seconds:08x}{serial:016x}"


def trello_card(card_id: str, board_id: str, **fields: Any) -> dict[str, Any]:
    """A card as `GET /1/boards/{id}/cards` answers it with every field."""
    card: dict[str, Any] = {
        "id": card_id, "idBoard": board_id, "shortLink": f"s{card_id[-7:]}", "name": "",
        "desc": "", "due": None, "closed": False, "idList": None, "labels": [],
        "dateLastActivity": "2025-03-01T10:00:00.000Z"}
    card.update(fields)
    return card


def adf(*paragraphs: str) -> dict[str, Any]:
    """An Atlassian Document Format document of plain paragraphs."""
    return {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": text}]}
        for text in paragraphs]}


def _shown(issue: dict[str, Any], request: RecordedRequest) -> dict[str, Any]:
    wanted = request.params.get("fields", "*all").split(",")
    fields = issue.get("fields", {})
    if "*all" not in wanted:
        fields = {name: value for name, value in fields.items() if name in wanted}
    return {**issue, "fields": fields}


def _project_of(issue: dict[str, Any]) -> str:
    project = issue.get("fields", {}).get("project")
    if isinstance(project, dict) and "key" in project:
        return str(project["key"])
    return str(issue["key"]).rsplit("-", 1)[0]


def _key_order(issue: dict[str, Any]) -> tuple[str, int]:
    prefix, _, number = str(issue["key"]).rpartition("-")
    return prefix, int(number) if number.isdigit() else 0


def _offset_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _token_offset(token: str | None) -> int:
    return int(base64.urlsafe_b64decode(token).decode().split(":")[1]) if token else 0


def _card_filter(card: dict[str, Any], name: str) -> bool:
    if name == "all":
        return True
    return bool(card.get("closed")) if name == "closed" else not card.get("closed")
