"""The fuzz part's bodies: hypothesis strategies shaped after upstream-formats.md, and
mutations of real bodies (those of chaos.bodies, plus the other event types boxsync reads).

Every body is raw bytes, as an upstream system (or an attacker with topic access) would put
on `jira.events` or `trello.events`: some valid, most broken in one way each. A mutation is
named, so the table can say how many of each went through.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from chaos.bodies import Body, Generator

# --- hypothesis: bodies that follow the formats loosely -------------------------------------

_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=16))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_site = st.sampled_from(["fuzz.atlassian.net", "jira.example.org", "", "not a host"])
_ids = st.from_regex(r"\A[0-9]{1,7}\Z") | st.integers(min_value=-5, max_value=10**12) | _json
_millis = (st.integers(min_value=0, max_value=4_102_444_800_000)
           | st.integers(min_value=-(2**63), max_value=2**64) | st.floats() | _json)
_jira_events = st.sampled_from([
    "jira:issue_created", "jira:issue_updated", "jira:issue_deleted", "comment_created",
    "comment_deleted", "worklog_created", "issuelink_created", "project_deleted",
    "jira:version_released", "sprint_started", "user_created", "board_updated"]) | _json
_jira_fields = st.sampled_from(["summary", "status", "assignee", "priority", "duedate",
                                "labels", "description", "customfield_10016",
                                "customfield_10015", "parent", "issuelinks", "Статус"])
_items = st.lists(st.fixed_dictionaries(
    {"field": _jira_fields | _json},
    optional={"fieldId": _jira_fields | _json, "fieldtype": st.sampled_from(["jira", "custom"]),
              "from": _json, "fromString": _json, "to": _json, "toString": _json}), max_size=5)


@st.composite
def jira_bodies(draw: st.DrawFn) -> dict[str, Any]:
    issue_id = draw(_ids)
    site = draw(_site)
    issue = draw(st.fixed_dictionaries(
        {"id": st.just(issue_id)},
        optional={"self": st.just(f"https://{site}/rest/api/2/issue/{issue_id}") | _json,
                  "key": st.from_regex(r"\A[A-Z]{1,4}-[0-9]{1,5}\Z") | _json,
                  "fields": st.dictionaries(_jira_fields, _json, max_size=6) | _json}))
    return draw(st.fixed_dictionaries(
        {"webhookEvent": _jira_events},
        optional={"timestamp": _millis, "issue": st.just(issue) | _json,
                  "issue_event_type_name": st.sampled_from(
                      ["issue_updated", "issue_generic", "issue_assigned",
                       "issue_commented"]) | _json,
                  "user": st.fixed_dictionaries({}, optional={
                      "accountId": st.text(max_size=20) | _json, "key": _json, "name": _json,
                      "displayName": _json, "accountType": _json}) | _json,
                  "changelog": st.fixed_dictionaries({}, optional={
                      "id": _ids, "items": _items | _json}) | _json,
                  "comment": _json, "worklog": _json, "issueLink": _json, "project": _json}))


_hex24 = st.from_regex(r"\A[0-9a-f]{24}\Z")
_trello_types = st.sampled_from([
    "createCard", "updateCard", "deleteCard", "commentCard", "addMemberToCard",
    "removeMemberFromCard", "updateCheckItemStateOnCard", "updateBoard", "addLabelToCard"]) | _json


@st.composite
def trello_bodies(draw: st.DrawFn) -> dict[str, Any]:
    card = draw(st.fixed_dictionaries({}, optional={
        "id": _hex24 | _json, "name": _json, "idShort": _json, "shortLink": _json,
        "due": _json, "closed": _json, "idList": _json, "desc": _json}))
    data = draw(st.fixed_dictionaries({}, optional={
        "card": st.just(card) | _json, "board": st.fixed_dictionaries(
            {}, optional={"id": _hex24 | _json, "name": _json}) | _json,
        "old": st.dictionaries(st.sampled_from(["name", "due", "closed", "idList", "desc"]),
                               _json, max_size=3) | _json,
        "listAfter": _json, "listBefore": _json, "text": _json}))
    action = draw(st.fixed_dictionaries({}, optional={
        "id": _hex24 | _json, "type": _trello_types, "idMemberCreator": _hex24 | _json,
        "date": st.datetimes().map(lambda d: d.isoformat() + "Z") | _json,
        "data": st.just(data) | _json, "memberCreator": _json}))
    return draw(st.fixed_dictionaries({}, optional={"action": st.just(action) | _json,
                                                   "model": _json}))


def hypothesis_bodies(count: int, seed: int) -> list[tuple[str, bytes]]:
    """`count` (topic, raw JSON) pairs drawn from the strategies, half Jira, half Trello."""
    out: list[tuple[str, bytes]] = []
    strategy = st.one_of(jira_bodies().map(lambda b: ("jira.events", b)),
                         trello_bodies().map(lambda b: ("trello.events", b)))

    @settings(max_examples=count, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(strategy)
    def collect(pair: tuple[str, Any]) -> None:
        out.append((pair[0], _dumps(pair[1])))

    # A seed of our own, so that two runs with the same --seed draw the same bodies.
    random_state = random.getstate()
    random.seed(seed)
    try:
        collect()
    finally:
        random.setstate(random_state)
    return out[:count]


def _dumps(value: Any) -> bytes:
    """JSON bytes; integers beyond 64 bits and lone surrogates through the standard encoder
    (orjson refuses both), which writes surrogates as \\u escapes."""
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value).encode()


# --- mutations of real bodies ------------------------------------------------------------------


def _truncate(raw: bytes, rng: random.Random) -> bytes:
    return raw[:rng.randrange(0, max(1, len(raw)))]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*path, index))
    return found


def _replace(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = body
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return body


def _at_random_place(raw: bytes, rng: random.Random, value: Any) -> bytes:
    body = orjson.loads(raw)
    places = [path for path in _paths(body) if path]
    return _dumps(_replace(body, rng.choice(places), value))


def _wrong_type(raw: bytes, rng: random.Random) -> bytes:
    others = [None, True, 0, -1, 3.5, "", "x" * 40, [], [1, "a"], {}, {"id": None}]
    return _at_random_place(raw, rng, rng.choice(others))


def _huge_number(raw: bytes, rng: random.Random) -> bytes:
    marker = "__chaos_huge__"
    literal = rng.choice(["1" + "0" * 400, "-9" * 300, "1e999", "-1e999", "18446744073709551617",
                          "9223372036854775808", "1.7976931348623157e309", "0." + "0" * 500 + "1"])
    text = _at_random_place(raw, rng, marker)
    return text.replace(f'"{marker}"'.encode(), literal.encode())


def _deep_nesting(raw: bytes, rng: random.Random) -> bytes:
    marker = "__chaos_deep__"
    depth = rng.choice((100, 1_000, 10_000, 50_000))
    opener, closer = rng.choice((("[", "]"), ('{"a":', "}")))
    text = _at_random_place(raw, rng, marker)
    return text.replace(f'"{marker}"'.encode(), (opener * depth + "1" + closer * depth).encode())


def _string_places(raw: bytes) -> list[int]:
    """Offsets just inside a JSON string (after an opening quote that follows : or [ or ,)."""
    return [n + 1 for n in range(1, len(raw) - 1)
            if raw[n] == 0x22 and raw[n - 1] in b":[,"]


def _insert_in_string(raw: bytes, rng: random.Random, piece: bytes) -> bytes:
    places = _string_places(raw) or [len(raw) // 2]
    at = rng.choice(places)
    return raw[:at] + piece + raw[at:]


def _nul(raw: bytes, rng: random.Random) -> bytes:
    return _insert_in_string(raw, rng, rng.choice((b"\\u0000", b"a\\u0000b", b"\x00")))


def _lone_surrogate(raw: bytes, rng: random.Random) -> bytes:
    return _insert_in_string(raw, rng, rng.choice((b"\\ud83d", b"\\udc00x", b"\\udfff\\ud800")))


def _invalid_utf8(raw: bytes, rng: random.Random) -> bytes:
    pieces = (b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
              b"\xe2\x82")
    return _insert_in_string(raw, rng, rng.choice(pieces))


def big_array(raw: bytes, rng: random.Random) -> bytes:
    marker = "__chaos_array__"
    element = rng.choice(("0", "null", '"x"', "{}", "[]", "1e999"))
    text = _at_random_place(raw, rng, marker)
    return text.replace(f'"{marker}"'.encode(), ("[" + ",".join([element] * 100_000) + "]")
                        .encode())


def big_invalid(raw: bytes, rng: random.Random) -> bytes:
    """About 800 kB that is not JSON (an array of 100,000 strings, cut short): its dead letter
    is larger than the body, base64 and all."""
    marker = "__chaos_array__"
    text = _at_random_place(raw, rng, marker)
    whole = text.replace(f'"{marker}"'.encode(), ("[" + ",".join(['"abcde"'] * 100_000) + "]")
                         .encode())
    return whole[:-rng.randint(2, 50)]


def _not_an_object(raw: bytes, rng: random.Random) -> bytes:
    return rng.choice((b"[]", b"null", b"42", b'"a string"', b"", b"   ", b"\xef\xbb\xbf{}",
                       b"[" + raw + b"]", raw + b"garbage", raw + raw))


MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncated": _truncate, "wrong_type": _wrong_type, "huge_number": _huge_number,
    "deep_nesting": _deep_nesting, "nul": _nul, "lone_surrogate": _lone_surrogate,
    "invalid_utf8": _invalid_utf8, "not_an_object": _not_an_object,
}
BIG = "100k_array"  # rarer: each is 0.2 to 0.6 MB


def originals(generator: Generator, count: int, start_ms: int) -> list[Body]:
    """Real bodies to mutate: the load's `issue_updated` and `updateCard`, plus a few other
    event types boxsync reads (created, deleted, comment, worklog, link, Trello create)."""
    bodies = [generator.body(start_ms + n) for n in range(count)]
    site = generator.site
    user = generator.users[0]
    extra = [
        {"timestamp": start_ms, "webhookEvent": "jira:issue_created", "user": user,
         "issue": {"id": "30001", "self": f"https://{site}/rest/api/2/issue/30001",
                   "key": "FZ-1", "fields": {"summary": "new", "labels": ["a", "b"]}},
         "changelog": {"id": "1", "items": [{"field": "summary", "toString": "new"}]}},
        {"timestamp": start_ms, "webhookEvent": "jira:issue_deleted", "user": user,
         "issue": {"id": "30002", "self": f"https://{site}/rest/api/2/issue/30002",
                   "key": "FZ-2", "fields": {}}},
        {"timestamp": start_ms, "webhookEvent": "comment_created",
         "comment": {"id": "7", "author": user, "body": "hello", "self":
                     f"https://{site}/rest/api/2/issue/30001/comment/7"},
         "issue": {"id": "30001", "self": f"https://{site}/rest/api/2/issue/30001",
                   "key": "FZ-1", "fields": {"summary": "new"}}},
        {"timestamp": start_ms, "webhookEvent": "worklog_created",
         "worklog": {"self": f"https://{site}/rest/api/2/issue/30001/worklog/9", "id": "9",
                     "issueId": "30001", "author": user, "timeSpentSeconds": 60}},
        {"timestamp": start_ms, "webhookEvent": "issuelink_created",
         "issueLink": {"id": 5, "sourceIssueId": 30001, "destinationIssueId": 30002,
                       "issueLinkType": {"id": 1, "name": "Blocks"}}},
    ]
    out = list(bodies)
    for n, body in enumerate(extra):
        out.append(Body("jira.events", b"FZ-1", orjson.dumps(body),
                        [("X-Atlassian-Webhook-Identifier", f"fz-extra-{n}".encode())],
                        f"fz-extra-{n}", ""))
    card = "f" * 24
    create = {"action": {"id": "a" * 24, "type": "createCard", "date": "2026-01-01T00:00:00.000Z",
                         "idMemberCreator": "b" * 24,
                         "data": {"board": {"id": "c" * 24, "name": "B"},
                                  "card": {"id": card, "name": "C", "idShort": 1,
                                           "shortLink": "x"}, "list": {"id": "d" * 24}}},
              "model": {"id": "c" * 24}}
    out.append(Body("trello.events", card.encode(), orjson.dumps(create), [], "a" * 24, ""))
    return out
