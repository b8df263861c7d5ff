"""The load: raw Jira `issue_updated` and Trello `updateCard` bodies with unique ids, and the
oracle of every task's final state.

Each body changes one or two fields of one task. The oracle keeps, per task and field, the
value of the last change by source time (ties: the Jira changelog id, the Trello action id,
as boxsync orders them), so it does not depend on the order in which the bodies arrive. The
battery runs with the filters off (BOXSYNC_FILTERS_ENABLED=false), so every change is
permitted and the app cache must end equal to the oracle.

Jira bodies carry a unique `X-Atlassian-Webhook-Identifier` header (the delivery id, which
boxsync takes as the event id); Trello actions have unique 24-hex ids.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

STATUSES = (("To Do", "10000", "new"), ("In Progress", "3", "indeterminate"),
            ("In Review", "10002", "indeterminate"), ("Done", "10001", "done"))
PRIORITIES = ("Highest", "High", "Medium", "Low", "Lowest")
JIRA_FIELDS = ("summary", "status", "assignee", "priority", "due_date", "story_points")
TRELLO_FIELDS = ("summary", "due_date", "list", "closed")
LISTS = ("Backlog", "Doing", "Review", "Done")
STORY_POINTS_FIELD = "customfield_10016"


@dataclass(frozen=True)
class Body:
    topic: str  # jira.events or trello.events
    key: bytes
    value: bytes
    headers: list[tuple[str, str | bytes | None]]
    event_id: str
    task_id: str


@dataclass
class Oracle:
    """task id → field → ((source ms, tiebreak), value)."""

    last: dict[str, dict[str, tuple[tuple[int, int | str], Any]]] = field(default_factory=dict)

    def apply(self, task_id: str, order: tuple[int, int | str], changes: dict[str, Any]) -> None:
        fields = self.last.setdefault(task_id, {})
        for name, value in changes.items():
            known = fields.get(name)
            if known is None or known[0] < order:
                fields[name] = (order, value)

    def expected(self, task_id: str) -> dict[str, Any]:
        return {name: value for name, (_, value) in self.last[task_id].items()}


class Generator:
    """Bodies for `tasks` tasks of one run (a site and card ids of its own)."""

    def __init__(self, run: str, tasks: int, *, trello_share: float = 0.1, seed: int = 1,
                 authors: int = 100) -> None:
        self.rng = random.Random(seed)
        self.run = run
        self.site = f"chaos-{run}.atlassian.net"
        self.oracle = Oracle()
        self.counter = 0
        self.users: list[dict[str, Any]] = [{"self": f"https://{self.site}/rest/api/2/user?accountId=557058:{n:032x}",
                       "accountId": f"557058:{n:032x}", "displayName": f"Chaos User {n}",
                       "active": True, "accountType": "atlassian", "timeZone": "UTC"}
                      for n in range(authors)]
        trello = int(tasks * trello_share)
        self.jira_tasks = tasks - trello
        self.trello_cards = [f"{int(run, 16) % 2**32:08x}{n:016x}" for n in range(trello)]
        self.board = f"{int(run, 16) % 2**32:08x}{'b' * 16}"

    def body(self, timestamp_ms: int) -> Body:
        """One change to a random task at `timestamp_ms`."""
        self.counter += 1
        task = self.rng.randrange(self.jira_tasks + len(self.trello_cards))
        if task < self.jira_tasks:
            return self._jira(task, timestamp_ms)
        return self._trello(self.trello_cards[task - self.jira_tasks], timestamp_ms)

    def schedule(self, events: int, start_ms: int, rate: float, jitter_ms: int = 300
                 ) -> list[tuple[float, Body]]:
        """`events` bodies due at `rate` per second from `start_ms`: (due offset in s, body);
        each body's source time is its due time moved by up to ±jitter (arrival order is not
        source order)."""
        out = []
        for n in range(events):
            due = n / rate
            source_ms = start_ms + int(due * 1000) + self.rng.randint(-jitter_ms, jitter_ms)
            out.append((due, self.body(source_ms)))
        return out

    def _jira(self, task: int, timestamp_ms: int) -> Body:
        rng, n = self.rng, self.counter
        issue_id = str(20000 + task)
        project = f"CH{task % 20}"
        changed = rng.sample(JIRA_FIELDS, rng.choice((1, 1, 2)))
        items: list[dict[str, Any]] = []
        fields: dict[str, Any] = {
            "issuetype": {"id": "10001", "name": "Task", "subtask": False},
            "project": {"id": str(10000 + task % 20), "key": project, "name": project},
            "labels": [],
        }
        normalized: dict[str, Any] = {}
        for name in changed:
            if name == "summary":
                value = f"Task {task} revision {n}"
                fields["summary"] = value
                items.append(_item("summary", "summary", None, value))
                normalized["summary"] = value
            elif name == "status":
                status, status_id, category = rng.choice(STATUSES)
                fields["status"] = {"self": f"https://{self.site}/rest/api/2/status/{status_id}",
                                    "name": status, "id": status_id,
                                    "statusCategory": {"id": 2, "key": category,
                                                       "name": category}}
                items.append(_item("status", "status", status_id, status))
                normalized["status"] = status
                normalized["status_category"] = category
            elif name == "assignee":
                user = rng.choice(self.users) if rng.random() < 0.9 else None
                fields["assignee"] = user
                account = user["accountId"] if user else None
                items.append(_item("assignee", "assignee", account,
                                   user["displayName"] if user else None))
                normalized["assignee"] = account
            elif name == "priority":
                priority = rng.choice(PRIORITIES)
                fields["priority"] = {"name": priority, "id": str(PRIORITIES.index(priority))}
                items.append(_item("priority", "priority", None, priority))
                normalized["priority"] = priority
            elif name == "due_date":
                due = f"2027-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
                fields["duedate"] = due
                items.append(_item("duedate", "duedate", due, f"{due} 00:00:00.0"))
                normalized["due_date"] = due
            else:
                points: int | float = rng.choice((1, 2, 3, 5, 8, 13, 0.5, 2.5))
                fields[STORY_POINTS_FIELD] = points
                items.append({"field": "Story point estimate", "fieldtype": "custom",
                              "fieldId": STORY_POINTS_FIELD, "from": None, "fromString": None,
                              "to": None, "toString": str(points)})
                normalized["story_points"] = points
        body = {
            "timestamp": timestamp_ms, "webhookEvent": "jira:issue_updated",
            "issue_event_type_name": "issue_updated", "user": rng.choice(self.users),
            "issue": {"id": issue_id, "self": f"https://{self.site}/rest/api/2/issue/{issue_id}",
                      "key": f"{project}-{task}", "fields": fields},
            "changelog": {"id": str(n), "items": items},
        }
        task_id = f"jira:{self.site}:{issue_id}"
        self.oracle.apply(task_id, (timestamp_ms, n), normalized)
        event_id = f"chaos-{self.run}-{n}"
        return Body("jira.events", f"{project}-{task}".encode(), orjson.dumps(body),
                    [("X-Atlassian-Webhook-Identifier", event_id.encode())], event_id, task_id)

    def _trello(self, card: str, timestamp_ms: int) -> Body:
        rng, n = self.rng, self.counter
        action_id = f"{timestamp_ms // 1000 % 2**32:08x}{n:016x}"
        changed = rng.choice(TRELLO_FIELDS)
        data: dict[str, Any] = {"board": {"id": self.board, "name": "Chaos", "shortLink": "chB"},
                                "card": {"id": card, "name": f"Card {card[-4:]}",
                                         "idShort": n % 1000, "shortLink": card[-8:]}}
        normalized: dict[str, Any] = {}
        if changed == "summary":
            name = f"Card {card[-6:]} revision {n}"
            data["card"]["name"] = name
            data["old"] = {"name": "before"}
            normalized["summary"] = name
        elif changed == "due_date":
            day = f"2027-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            data["card"]["due"] = f"{day}T12:00:00.000Z"
            data["old"] = {"due": None}
            normalized["due_date"] = day
        elif changed == "list":
            after = rng.choice(LISTS)
            data["card"]["idList"] = f"{LISTS.index(after):024x}"
            data["old"] = {"idList": "0" * 24}
            data["listBefore"] = {"id": "0" * 24, "name": "Before"}
            data["listAfter"] = {"id": f"{LISTS.index(after):024x}", "name": after}
            normalized["list"] = after
        else:
            closed = rng.random() < 0.5
            data["card"]["closed"] = closed
            data["old"] = {"closed": not closed}
            normalized["closed"] = closed
        member = rng.choice(self.users)
        body = {"action": {"id": action_id, "idMemberCreator": f"{self.users.index(member):024x}",
                           "type": "updateCard", "date": _iso_ms(timestamp_ms), "data": data,
                           "memberCreator": {"id": f"{self.users.index(member):024x}",
                                             "username": "chaos", "fullName": "Chaos"}},
                "model": {"id": self.board, "name": "Chaos"}}
        task_id = f"trello:{card}"
        self.oracle.apply(task_id, (timestamp_ms, action_id), normalized)
        return Body("trello.events", card.encode(), orjson.dumps(body), [], action_id, task_id)


def _item(field_name: str, field_id: str, to: str | None, to_string: str | None
          ) -> dict[str, Any]:
    return {"field": field_name, "fieldtype": "jira", "fieldId": field_id, "from": None,
            "fromString": None, "to": to, "toString": to_string}


def _iso_ms(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def now_ms() -> int:
    return int(time.time() * 1000)


def live(generator: Generator, rate: float, duration: float) -> Iterator[tuple[float, Body]]:
    """Bodies at `rate` per second for `duration` seconds, made as they fall due, with the
    wall clock as source time (the soak: too many to make up front)."""
    start_ms = now_ms()
    n = 0
    while (due := n / rate) < duration:
        yield due, generator.body(start_ms + int(due * 1000))
        n += 1
