"""The webhook resources of Jira and Trello, over the sources' REST clients (and so through
their limiters, as `webhook` calls at the incremental syncs' priority).

Jira Cloud's dynamic webhooks (`/rest/api/3/webhook`): list (paged: `values`, `isLast`),
register (`{url, webhooks: [{events, jqlFilter}]}` → `webhookRegistrationResult`, one
`createdWebhookId` or `errors` per webhook), refresh (`PUT .../refresh {webhookIds}` →
`{expirationDate}`), remove (`DELETE {webhookIds}`), and the deliveries that failed their
last retry (`GET .../failed`: `values` of `{id, body, url, failureTime}`, `next`). Atlassian
offers these to Connect and OAuth 2.0 apps only: with an API token Jira answers 403, which
comes back as SourceAuthFailed saying so.

Trello (`/1/webhooks`): list the token's (`GET /1/tokens/{token}/webhooks`), register one
per board (`POST /1/webhooks` with `callbackURL`, `idModel`, `description`; Trello checks the
callback with a HEAD first), remove (`DELETE /1/webhooks/{id}`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from processors.sources.jira import JiraSource
from processors.sources.limits import Priority
from processors.sources.model import SourceUnavailable
from processors.sources.trello import TrelloSource
from processors.upkeep.logic import Listed, Wanted

JIRA_WEBHOOK = "/rest/api/3/webhook"
TRELLO_DESCRIPTION = "boxsync"


class JiraWebhooks:
    def __init__(self, source: JiraSource) -> None:
        self.source = source
        self.site = source.site

    def listed(self, callback_url: str | None) -> list[Listed]:
        """The app's dynamic webhooks (Jira lists only the calling app's)."""
        found: list[Listed] = []
        start = 0
        while True:
            page = self._call("GET", JIRA_WEBHOOK, params={"startAt": start, "maxResults": 100})
            values = page.get("values") if isinstance(page, dict) else None
            if not isinstance(values, list):
                raise SourceUnavailable(f"Jira answered GET {JIRA_WEBHOOK} without values")
            found.extend(self._listed(value, callback_url) for value in values
                         if isinstance(value, dict) and value.get("id") is not None)
            start += len(values)
            if not values or page.get("isLast", True):
                return found

    def register(self, hook: Wanted) -> Listed:
        answer = self._call("POST", JIRA_WEBHOOK, body={
            "url": hook.callback_url,
            "webhooks": [{"events": list(hook.events), "jqlFilter": hook.target}]})
        results = answer.get("webhookRegistrationResult") if isinstance(answer, dict) else None
        result = results[0] if isinstance(results, list) and results else {}
        created = result.get("createdWebhookId") if isinstance(result, dict) else None
        if created is None:
            errors = result.get("errors") if isinstance(result, dict) else None
            raise SourceUnavailable(f"Jira did not register the webhook for {hook.target}: "
                                    f"{'; '.join(map(str, errors or [])) or 'no id returned'}")
        return Listed("jira", self.site, str(created), hook.target, hook.callback_url,
                      hook.events)

    def refresh(self, ids: list[str]) -> datetime | None:
        answer = self._call("PUT", f"{JIRA_WEBHOOK}/refresh",
                            body={"webhookIds": [_numeric(i) for i in ids]})
        return instant(answer.get("expirationDate")) if isinstance(answer, dict) else None

    def remove(self, ids: list[str]) -> None:
        self._call("DELETE", JIRA_WEBHOOK, body={"webhookIds": [_numeric(i) for i in ids]})

    def failed(self, after: int | None) -> Iterator[dict[str, Any]]:
        """Failed deliveries after the `failureTime` `after` (epoch ms), oldest first, page by
        page as Jira's `next` links say."""
        params: dict[str, Any] = {"maxResults": 100}
        if after is not None:
            params["after"] = after
        while True:
            page = self._call("GET", f"{JIRA_WEBHOOK}/failed", params=params)
            values = page.get("values") if isinstance(page, dict) else None
            if not isinstance(values, list) or not values:
                return
            yield from (value for value in values if isinstance(value, dict))
            following = page.get("next")
            if not isinstance(following, str) or not following:
                return
            params = dict(parse_qsl(urlsplit(following).query))

    def _listed(self, value: dict[str, Any], callback_url: str | None) -> Listed:
        url = value.get("url")
        # A listing without `url` (older answers): the app's webhooks share its callback.
        callback = url if isinstance(url, str) and url else (callback_url or "")
        events = value.get("events")
        return Listed("jira", self.site, str(value["id"]), str(value.get("jqlFilter") or ""),
                      callback, tuple(e for e in events if isinstance(e, str))
                      if isinstance(events, list) else (),
                      expires_at=instant(value.get("expirationDate")),
                      ours=callback == callback_url)

    def _call(self, method: str, path: str, **options: Any) -> Any:
        return self.source.request(method, path, endpoint="webhook",
                                   priority=Priority.INCREMENTAL, **options)


class TrelloWebhooks:
    site = "trello"

    def __init__(self, source: TrelloSource) -> None:
        self.source = source

    def listed(self) -> list[Listed]:
        answer = self._call("GET", f"/1/tokens/{quote(self.source.token, safe='')}/webhooks")
        if not isinstance(answer, list):
            raise SourceUnavailable("Trello answered the token's webhooks with no list")
        return [Listed("trello", "trello", str(item["id"]), str(item.get("idModel") or ""),
                       str(item.get("callbackURL") or ""),
                       ours=item.get("description") == TRELLO_DESCRIPTION)
                for item in answer if isinstance(item, dict) and item.get("id")]

    def register(self, hook: Wanted) -> Listed:
        answer = self._call("POST", "/1/webhooks", params={
            "callbackURL": hook.callback_url, "idModel": hook.target,
            "description": TRELLO_DESCRIPTION})
        if not isinstance(answer, dict) or not answer.get("id"):
            raise SourceUnavailable(f"Trello did not register the webhook for {hook.target}")
        return Listed("trello", "trello", str(answer["id"]), hook.target, hook.callback_url)

    def remove(self, webhook_id: str) -> None:
        self._call("DELETE", f"/1/webhooks/{quote(webhook_id, safe='')}")

    def _call(self, method: str, path: str, **options: Any) -> Any:
        return self.source.request(method, path, endpoint="webhook",
                                   priority=Priority.INCREMENTAL, **options)


def instant(value: Any) -> datetime | None:
    """Jira's times: epoch milliseconds, or ISO 8601 with a `+0000` offset."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str) and value:
        text = value.replace("Z", "+00:00")
        if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
            text = f"{text[:-2]}:{text[-2:]}"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


def _numeric(webhook_id: str) -> int | str:
    return int(webhook_id) if webhook_id.isdigit() else webhook_id
