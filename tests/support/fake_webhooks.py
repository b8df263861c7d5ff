"""The webhook resources of the local Jira/Trello server (tests/support/fake_sources.py), in
the documented shapes:

| request                                   | answer                                              |
|-------------------------------------------|-----------------------------------------------------|
| `GET /rest/api/3/webhook`                 | `{startAt, maxResults, total, isLast, values: [{id, |
|                                           | jqlFilter, events, expirationDate, url}]}`          |
| `POST /rest/api/3/webhook`                | `{webhookRegistrationResult: [{createdWebhookId}]}` |
| `PUT /rest/api/3/webhook/refresh`         | `{expirationDate}` (30 days on)                     |
| `DELETE /rest/api/3/webhook`              | 202, no body                                        |
| `GET /rest/api/3/webhook/failed`          | `{values: [{id, body, url, failureTime}],           |
|                                           | maxResults, next?}` after `after`/`failedAfter`     |
| `GET /1/tokens/{token}/webhooks`          | `[{id, description, idModel, callbackURL, active}]` |
| `POST /1/webhooks`                        | the webhook; 400 for the same callback, model and   |
|                                           | token twice (as Trello answers)                     |
| `DELETE /1/webhooks/{id}`                 | `{"_value": null}`                                  |

Times come from `fake.now` (epoch seconds) so that tests can move them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.support.fake_sources import FakeSources, RecordedRequest

JIRA_WEBHOOK = "/rest/api/3/webhook"
_TRELLO_TOKEN_HOOKS = re.compile(r"^/1/tokens/([^/]+)/webhooks$")
_TRELLO_HOOK = re.compile(r"^/1/webhooks/([^/]+)$")


def handles(path: str) -> bool:
    return (path.startswith(JIRA_WEBHOOK) or path.startswith("/1/webhooks")
            or bool(_TRELLO_TOKEN_HOOKS.match(path)))


def answer(fake: FakeSources, request: RecordedRequest) -> tuple[int, Any]:
    if request.path.startswith(JIRA_WEBHOOK):
        if request.headers.get("authorization") != fake.jira_authorization("cloud"):
            return 401, b"Client must be authenticated to access this resource."
        if fake.dynamic_webhooks_forbidden:  # an API token, not an OAuth 2.0 or Connect app
            return 403, {"errorMessages": ["Only Connect and OAuth 2.0 apps can use this "
                                           "operation."]}
        return _jira(fake, request)
    if request.params.get("key") != fake.trello_key or request.params.get(
            "token") != fake.trello_token:
        return 401, b"invalid token"
    return _trello(fake, request)


def _jira(fake: FakeSources, request: RecordedRequest) -> tuple[int, Any]:
    route = (request.method, request.path)
    body = request.body if isinstance(request.body, dict) else {}
    if route == ("GET", JIRA_WEBHOOK):
        start = int(request.params.get("startAt", "0"))
        size = int(request.params.get("maxResults", "50"))
        hooks = [fake.jira_webhooks[i] for i in sorted(fake.jira_webhooks)]
        page = hooks[start:start + size]
        return 200, {"startAt": start, "maxResults": size, "total": len(hooks),
                     "isLast": start + size >= len(hooks), "values": page}
    if route == ("POST", JIRA_WEBHOOK):
        results = []
        for spec in body.get("webhooks", []):
            fake.next_webhook_id += 1
            fake.jira_webhooks[fake.next_webhook_id] = {
                "id": fake.next_webhook_id, "jqlFilter": spec.get("jqlFilter"),
                "events": spec.get("events"), "url": body.get("url"),
                "expirationDate": _jira_time(fake.now + 30 * 86400)}
            results.append({"createdWebhookId": fake.next_webhook_id})
        return 200, {"webhookRegistrationResult": results}
    if route == ("PUT", f"{JIRA_WEBHOOK}/refresh"):
        expires = _jira_time(fake.now + 30 * 86400)
        for webhook_id in body.get("webhookIds", []):
            if webhook_id in fake.jira_webhooks:
                fake.jira_webhooks[webhook_id]["expirationDate"] = expires
        return 200, {"expirationDate": expires}
    if route == ("DELETE", JIRA_WEBHOOK):
        for webhook_id in body.get("webhookIds", []):
            fake.jira_webhooks.pop(webhook_id, None)
        return 202, b""
    if route == ("GET", f"{JIRA_WEBHOOK}/failed"):
        return 200, _failed(fake, request)
    return 404, {"errorMessages": [f"no route {request.method} {request.path}"]}


def _failed(fake: FakeSources, request: RecordedRequest) -> dict[str, Any]:
    after = int(request.params.get("after") or request.params.get("failedAfter") or 0)
    size = int(request.params.get("maxResults", "100"))
    chosen = sorted((item for item in fake.failed_webhooks if item["failureTime"] > after),
                    key=lambda item: item["failureTime"])[:size]
    page: dict[str, Any] = {"values": chosen, "maxResults": size}
    if chosen:  # Jira gives `next` whenever the page has something, even if what follows is not
        page["next"] = (f"{fake.url}{JIRA_WEBHOOK}/failed?failedAfter="
                        f"{chosen[-1]['failureTime']}&maxResults={size}")
    return page


def _trello(fake: FakeSources, request: RecordedRequest) -> tuple[int, Any]:
    token_hooks = _TRELLO_TOKEN_HOOKS.match(request.path)
    if request.method == "GET" and token_hooks:
        return 200, list(fake.trello_webhooks.values())
    if (request.method, request.path) == ("POST", "/1/webhooks"):
        params = request.params
        for hook in fake.trello_webhooks.values():
            if (hook["callbackURL"], hook["idModel"]) == (params.get("callbackURL"),
                                                          params.get("idModel")):
                return 400, b"A webhook with that callback, model, and token already exists"
        fake.next_webhook_id += 1
        hook_id = f"{fake.next_webhook_id:024x}"
        fake.trello_webhooks[hook_id] = {
            "id": hook_id, "description": params.get("description", ""),
            "idModel": params.get("idModel"), "callbackURL": params.get("callbackURL"),
            "active": True, "consecutiveFailures": 0, "firstConsecutiveFailDate": None}
        return 200, fake.trello_webhooks[hook_id]
    single = _TRELLO_HOOK.match(request.path)
    if request.method == "DELETE" and single:
        if fake.trello_webhooks.pop(single.group(1), None) is None:
            return 404, b"The requested resource was not found."
        return 200, {"_value": None}
    return 404, b"The requested resource was not found."


def _jira_time(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def in_days(days: float, now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC) + timedelta(days=days)
