"""Jira as a task source: the issues a box scope selects, over the REST search API.

Two deployments, told apart by the credentials:
- Cloud (`email` + `api_token`, HTTP basic auth): the enhanced search
  `GET /rest/api/3/search/jql` (params `jql`, `fields`, `maxResults`, `nextPageToken`), paged
  until an answer has `isLast: true` or no `nextPageToken`. It gives no total, so the total is
  asked once from `POST /rest/api/3/search/approximate-count` (`{jql}` → `{count}`), best
  effort: None when that fails. v3 answers hold rich text (`description`) as an Atlassian
  Document Format document; it is turned into plain text before normalization.
- Data Center (`pat`, `Authorization: Bearer`): `GET /rest/api/2/search` paged by `startAt`
  and `maxResults`, with `total` in every answer; the next `startAt` counts the issues really
  returned, since the server may cap `maxResults`.

Tasks are normalized by the ingest's own `issue_snapshot`, so a full sync and a webhook give a
field the same value. The site in the task id is the host of the issue's `self` URL (what the
webhooks carry, contract §2), else the host of the base URL.

Every request goes through the source's `Limiter` when it has one (processors.sources.limiter:
the site's points quota and per-endpoint burst buckets, shared in PostgreSQL), at the
priority of the listing: full listings last, incremental ones before them.
"""

from __future__ import annotations

import base64
import re
import reprlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr

from processors.ingest.jira_fields import issue_snapshot
from processors.ingest.text import clean_text
from processors.sources.http import HttpClient, Service, checked_base_url
from processors.sources.limiter import Gate, Limiter
from processors.sources.limits import Call, Priority
from processors.sources.model import SourcePage, SourceTask, SourceUnavailable, epoch_of_iso

# The Jira fields the normalized fields of contract §5 come from, plus `project` (the task's
# project) and `updated` (its last-updated time); nothing else is asked for.
SNAPSHOT_FIELDS = ("summary", "status", "assignee", "priority", "duedate", "labels", "parent",
                   "issuelinks", "description", "project", "updated")
CLOUD_SEARCH = "/rest/api/3/search/jql"
CLOUD_COUNT = "/rest/api/3/search/approximate-count"
DC_SEARCH = "/rest/api/2/search"
MAX_PAGE_SIZE = 1000  # Data Center's default cap (jira.search.views.default.max)
# A trailing ORDER BY of the box's JQL: it cannot stand inside the parentheses it goes into.
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)
# ADF nodes that sit inside a paragraph; every other node with content is a block.
_ADF_INLINE = {"text", "hardBreak", "mention", "emoji", "inlineCard", "status", "date",
               "placeholder", "mediaInline"}

Deployment = Literal["cloud", "datacenter"]


class JiraSource:
    """The issues of a Jira site, as `SourceTask`s (see the module docstring)."""

    def __init__(self, base_url: str, *, email: str | None = None,
                 api_token: str | SecretStr | None = None, pat: str | SecretStr | None = None,
                 field_map: Mapping[str, str] | None = None, page_size: int = 100,
                 http: HttpClient | None = None, limiter: Limiter | None = None) -> None:
        self.base_url, self.site = checked_base_url(base_url, "BOXSYNC_JIRA_BASE_URL")
        self.deployment, self._authorization, secret = _credentials(email, api_token, pat)
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"Jira page size must be 1 to {MAX_PAGE_SIZE}, got {page_size}")
        self.page_size = page_size
        self.field_map = dict(field_map or {})
        self._http = http or HttpClient()
        self.limiter = limiter
        self.credential = secret  # for the limiter's fingerprint; never logged
        hint = ("check BOXSYNC_JIRA_EMAIL and BOXSYNC_JIRA_API_TOKEN" if self.deployment == "cloud"
                else "check BOXSYNC_JIRA_PAT")
        self._service = Service(
            "Jira", f"{hint}, and that this user may browse the box's projects",
            "check BOXSYNC_JIRA_BASE_URL and the box scope (projects, labels, JQL)", (secret,))

    def __repr__(self) -> str:  # no credentials
        return f"JiraSource({self.base_url!r}, deployment={self.deployment!r})"

    def build_jql(self, jira_projects: Iterable[str], labels_all: Iterable[str],
                  jql: str | None) -> str:
        """The search of a box scope; see `build_jql` (module level)."""
        return build_jql(jira_projects, labels_all, jql)

    def fields(self) -> list[str]:
        """The `fields` asked for in a full listing: the snapshot's and the mapped custom ones."""
        return [*SNAPSHOT_FIELDS, *sorted(set(self.field_map) - set(SNAPSHOT_FIELDS))]

    def iter_pages(self, jira_projects: Iterable[str], labels_all: Iterable[str] = (),
                   jql: str | None = None, priority: Priority = Priority.FULL
                   ) -> Iterator[SourcePage]:
        """Every issue the scope selects, with its normalized fields, each exactly once.
        Nothing (no request) when the scope names no Jira project."""
        yield from self._listing(jira_projects, labels_all, jql, self.fields(), full=True,
                                 priority=priority)

    def iter_updated(self, jira_projects: Iterable[str], labels_all: Iterable[str] = (),
                     jql: str | None = None, priority: Priority = Priority.INCREMENTAL
                     ) -> Iterator[SourcePage]:
        """The same issues with `updated` only (`fields` empty), for incremental sync. The
        contract passes a box's JQL to Jira on full sync only: incremental callers leave
        `jql` None."""
        yield from self._listing(jira_projects, labels_all, jql, ["updated"], full=False,
                                 priority=priority)

    def newest_update(self, jira_projects: Iterable[str]) -> float | None:
        """Epoch seconds of the newest `updated` among the projects' issues (one issue read:
        2 points), for the silence check; None when they have none."""
        query = filter_jql(jira_projects, [], None) + " ORDER BY updated DESC"
        path = CLOUD_SEARCH if self.deployment == "cloud" else DC_SEARCH
        answer = self.request("GET", path, endpoint="search", objects=1, params={
            "jql": query, "fields": "updated", "maxResults": 1})
        issues = self._issues(self._answer_object(answer, path), path)
        times = [epoch_of_iso(issue.get("fields", {}).get("updated"))
                 for issue in issues if isinstance(issue, dict)]
        return max((at for at in times if at is not None), default=None)

    def request(self, method: str, path: str, *, endpoint: str,
                priority: Priority = Priority.INCREMENTAL, params: Mapping[str, Any] | None = None,
                body: Any = None, objects: int = 0, issue: str | None = None) -> Any:
        """One request to the site's REST API (`path` from /rest/...), through the limiter
        as the call `endpoint` (the class label of metrics and burst buckets)."""
        call = Call("jira", endpoint, method, priority, objects, issue)
        return self._http.request_json(self._service, method, self.base_url + path,
                                       params=params, headers=self._headers(), body=body,
                                       gate=self._gate(call))

    def _gate(self, call: Call) -> Gate | None:
        return self.limiter.gate(call) if self.limiter is not None else None

    def _listing(self, projects: Iterable[str], labels: Iterable[str], jql: str | None,
                 fields: list[str], *, full: bool, priority: Priority
                 ) -> Iterator[SourcePage]:
        projects, labels = [project for project in projects if project], list(labels)
        if not projects:
            return
        query = build_jql(projects, labels, jql)
        pages = (self._cloud_pages(query, fields, filter_jql(projects, labels, jql), priority)
                 if self.deployment == "cloud" else self._dc_pages(query, fields, priority))
        seen: set[str] = set()
        for issues, total in pages:
            tasks = [self._task(issue, full) for issue in issues]
            # Issues that move while paging can come twice; a task is listed once.
            fresh = [task for task in tasks if task.task_id not in seen]
            seen.update(task.task_id for task in fresh)
            yield SourcePage(fresh, total)

    def _cloud_pages(self, query: str, fields: list[str], count_query: str,
                     priority: Priority) -> Iterator[tuple[list[Any], int | None]]:
        total = self._approximate_count(count_query, priority)
        token: str | None = None
        while True:
            params: dict[str, Any] = {"jql": query, "fields": ",".join(fields),
                                      "maxResults": self.page_size}
            if token:
                params["nextPageToken"] = token
            answer = self._answer_object(self._get(CLOUD_SEARCH, params, priority),
                                         CLOUD_SEARCH)
            yield self._issues(answer, CLOUD_SEARCH), total
            next_token = answer.get("nextPageToken")
            # The last page may lack `isLast` and `nextPageToken` both (JRACLOUD-92184).
            if answer.get("isLast") is True or not isinstance(next_token, str) or not next_token:
                return
            if next_token == token:
                raise self._malformed(CLOUD_SEARCH, "the same nextPageToken twice")
            token = next_token

    def _dc_pages(self, query: str, fields: list[str], priority: Priority
                  ) -> Iterator[tuple[list[Any], int | None]]:
        start = 0
        while True:
            params = {"jql": query, "fields": ",".join(fields), "startAt": start,
                      "maxResults": self.page_size}
            answer = self._answer_object(self._get(DC_SEARCH, params, priority), DC_SEARCH)
            issues, total = self._issues(answer, DC_SEARCH), _count(answer.get("total"))
            yield issues, total
            start += len(issues)
            if not issues or (total is not None and start >= total):
                return

    def _approximate_count(self, query: str, priority: Priority) -> int | None:
        """Cloud's estimate of the issues a search will list, for progress only."""
        try:
            answer = self.request("POST", CLOUD_COUNT, endpoint="count", body={"jql": query},
                                  priority=priority)
        except SourceUnavailable:
            return None  # progress without a total is still progress
        return _count(answer.get("count")) if isinstance(answer, dict) else None

    def _task(self, issue: Any, full: bool) -> SourceTask:
        if not isinstance(issue, dict) or not _is_id(issue.get("id")):
            raise self._malformed("search", "an issue without an id")
        raw_fields = issue.get("fields")
        fields: dict[str, Any] = raw_fields if isinstance(raw_fields, dict) else {}
        key = clean_text(issue["key"]) if isinstance(issue.get("key"), str) else None
        updated_at = parse_jira_time(fields.get("updated"))
        if updated_at is None:
            raise self._malformed("search", f"issue {key or issue['id']} without a readable "
                                            f"`updated` ({reprlib.repr(fields.get('updated'))})")
        site = _host(issue.get("self")) or self.site
        return SourceTask(f"jira:{site}:{issue['id']}", "jira", key, _project(fields, key),
                          updated_at, self._normalize(fields) if full else {})

    def _normalize(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        plain = {name: adf_to_text(value) if _is_adf(value) else value
                 for name, value in fields.items()}
        return issue_snapshot(plain, self.field_map)

    def _get(self, path: str, params: Mapping[str, Any], priority: Priority) -> Any:
        return self.request("GET", path, endpoint="search", params=params,
                            priority=priority, objects=self.page_size)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._authorization}

    def _answer_object(self, answer: Any, path: str) -> dict[str, Any]:
        if not isinstance(answer, dict):
            raise self._malformed(path, "an answer that is not a JSON object")
        return answer

    def _issues(self, answer: Mapping[str, Any], path: str) -> list[Any]:
        issues = answer.get("issues")
        if not isinstance(issues, list):
            raise self._malformed(path, "an answer without an `issues` list")
        return issues

    def _malformed(self, path: str, what: str) -> SourceUnavailable:
        return SourceUnavailable(f"Jira {path} answered with {what}; check that "
                                 "BOXSYNC_JIRA_BASE_URL points at the Jira site itself (not a "
                                 "proxy or login page), then run the sync again")


def build_jql(jira_projects: Iterable[str], labels_all: Iterable[str], jql: str | None) -> str:
    """`project in ("A", "B") [AND labels = "x" ...] [AND (<box jql>)] ORDER BY key ASC`:
    the filter of `filter_jql`, ordered by key so that paging is stable."""
    return filter_jql(jira_projects, labels_all, jql) + " ORDER BY key ASC"


def filter_jql(jira_projects: Iterable[str], labels_all: Iterable[str], jql: str | None) -> str:
    """`project in ("A", "B") [AND labels = "x" ...] [AND (<box jql>)]`, without an order.

    Values are quoted (a `"` or `\\` in them escaped); labels keep their given order, since
    every one is required. A trailing ORDER BY of the box's JQL is dropped (it cannot stand
    inside parentheses). ValueError when no project is named: an unbounded search would read
    the whole site.
    """
    projects = [project for project in jira_projects if project]
    if not projects:
        raise ValueError("a Jira search needs at least one project")
    clauses = [f"project in ({', '.join(_quote(project) for project in projects)})"]
    clauses += [f"labels = {_quote(label)}" for label in labels_all if label]
    box_jql = _without_order_by(jql or "")
    if box_jql:
        clauses.append(f"({box_jql})")
    return " AND ".join(clauses)


def parse_jira_time(value: Any) -> float | None:
    """Jira's `updated` (`2019-08-11T18:49:13.412-0700`) → epoch seconds, or None."""
    return epoch_of_iso(value)


def adf_to_text(document: Any) -> str | None:
    """An Atlassian Document Format document → plain text: the text of each paragraph (or
    other block), blocks separated by a newline; None when it holds no text."""
    paragraphs: list[str] = []
    if isinstance(document, dict):
        _adf_blocks(document, paragraphs)
    text = "\n".join(paragraph for paragraph in paragraphs if paragraph.strip()).strip()
    return text or None


def _adf_blocks(node: Mapping[str, Any], out: list[str]) -> None:
    children = [child for child in node.get("content") or () if isinstance(child, dict)]
    if children and all(child.get("type") in _ADF_INLINE for child in children):
        out.append("".join(_adf_inline(child) for child in children))
        return
    for child in children:
        if child.get("type") in _ADF_INLINE:
            out.append(_adf_inline(child))  # inline content straight in a block list
        else:
            _adf_blocks(child, out)


def _adf_inline(node: Mapping[str, Any]) -> str:
    kind, attrs = node.get("type"), node.get("attrs")
    attrs = attrs if isinstance(attrs, dict) else {}
    if kind == "text":
        text = node.get("text")
        return text if isinstance(text, str) else ""
    if kind == "hardBreak":
        return "\n"
    shown = attrs.get("text") or attrs.get("shortName") or attrs.get("url")
    return shown if isinstance(shown, str) else ""


def _is_adf(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "doc"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _without_order_by(jql: str) -> str:
    """The JQL without a trailing ORDER BY clause that is outside every quoted string."""
    for match in reversed(list(_ORDER_BY.finditer(jql))):
        before = jql[:match.start()]
        if before.count('"') % 2 == 0 and before.count("'") % 2 == 0:
            return before.strip()
    return jql.strip()


def _credentials(email: str | None, api_token: str | SecretStr | None,
                 pat: str | SecretStr | None) -> tuple[Deployment, str, str]:
    """(deployment, Authorization header, the secret) from exactly one kind of credentials."""
    token, personal = _reveal(api_token), _reveal(pat)
    if personal and (email or token):
        raise ValueError("set either BOXSYNC_JIRA_PAT (Data Center) or BOXSYNC_JIRA_EMAIL with "
                         "BOXSYNC_JIRA_API_TOKEN (Cloud), not both")
    if personal:
        return "datacenter", f"Bearer {personal}", personal
    if email and token:
        basic = base64.b64encode(f"{email}:{token}".encode()).decode()
        return "cloud", f"Basic {basic}", token
    raise ValueError("Jira credentials missing: set BOXSYNC_JIRA_EMAIL and "
                     "BOXSYNC_JIRA_API_TOKEN (Cloud) or BOXSYNC_JIRA_PAT (Data Center)")


def _reveal(value: str | SecretStr | None) -> str | None:
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    return text or None


def _host(url: Any) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.lower() if host else None


def _project(fields: Mapping[str, Any], key: str | None) -> str | None:
    project = fields.get("project")
    if isinstance(project, dict) and isinstance(project.get("key"), str):
        return clean_text(project["key"])
    return key.rsplit("-", 1)[0] if key and "-" in key else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def _is_id(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, str | int) and bool(str(value))
