"""JSON over HTTP for the task sources, with retries (stdlib only).

Contract of `HttpClient.request_json`:
- 2xx: the decoded JSON body (None for an empty body); a body that is not JSON is
  `SourceUnavailable` at once (trying again would read the same answer).
- 401 and 403: `SourceAuthFailed` at once.
- 429: retried after `Retry-After` (seconds or an HTTP date) when the answer has one, else after
  the backoff; a `Retry-After` longer than `RetryPolicy.max_retry_after` fails at once rather
  than hold a worker for an hour. With a `gate` (processors.sources.limiter), the gate decides
  instead: it blocks the 429's class (endpoint, issue, quota, key or token) until the source's
  time and the retry waits in `gate.before()`, as every other call of that class does.
- a `gate` is asked before each try (it sleeps until the source's limits allow the call) and
  told every outcome (it counts them, and settles Jira's points by the objects returned).
- 5xx, timeouts and connection errors: retried with exponential backoff (base 0.5 s, doubled per
  try, capped at 30 s, with jitter unless turned off) up to `RetryPolicy.attempts` tries in all,
  then `SourceUnavailable`.
- any other status (3xx included: redirects are not followed, so that credentials never travel
  to another host): `SourceUnavailable` with the status and a short excerpt of the body.

Messages and logs name the method and the URL path only, never the query string (Trello takes
its key and token there) nor a header, and the service's secrets are scrubbed from excerpts.
`sleep` and `clock` are injectable, so tests retry without waiting.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from processors.logs import event
from processors.sources.model import SourceAuthFailed, SourceUnavailable

log = logging.getLogger(__name__)

# What a request can raise when the peer does not answer: URLError (refused, DNS, TLS) and
# timeouts are OSErrors; a peer closing mid-answer is an HTTPException (RemoteDisconnected,
# IncompleteRead).
_TRANSPORT_ERRORS = (OSError, http.client.HTTPException)
_EXCERPT_CHARS = 200
_USER_AGENT = "boxsync (task sources)"


@dataclass(frozen=True, slots=True)
class Service:
    """Who is asked, for messages: its name, what to check when it refuses the credentials and
    when it refuses a request, and the secrets to keep out of every message."""

    name: str
    auth_hint: str
    request_hint: str
    secrets: tuple[str, ...] = ()

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to wait. `attempts` counts every try, the first included."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    jitter: bool = True

    def backoff(self, retry: int) -> float:
        """The wait before retry number `retry` (1 for the first retry)."""
        delay = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        # Jitter spreads the retries of several workers hit by the same outage.
        return delay * random.uniform(0.5, 1.0) if self.jitter else delay


class Gate(Protocol):
    """A call's passage through a client-side limiter (processors.sources.limiter.Gate)."""

    def before(self) -> None: ...

    def after(self, status: int | None, headers: Mapping[str, str], payload: bytes,
              answer: Any = None) -> float | None: ...


@dataclass(frozen=True, slots=True)
class _Retriable:
    """A failed try that another try may fix; `wait` is what the server asked for, if any;
    `gated`: the gate waits before the next try, so the pause does not sleep."""

    detail: str
    status: int | None = None
    wait: float | None = None
    gated: bool = False


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx then surfaces as an HTTPError, judged like any other status


class HttpClient:
    """A blocking JSON client, shared by the sources of one sync run (it holds no connection)."""

    def __init__(self, *, policy: RetryPolicy | None = None, timeout: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time) -> None:
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self._sleep = sleep
        self._clock = clock
        # The default handlers, proxies from the environment included, minus redirects.
        self._opener = urllib.request.build_opener(_RefuseRedirects)

    def get_json(self, service: Service, url: str, *, params: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None, gate: Gate | None = None) -> Any:
        return self.request_json(service, "GET", url, params=params, headers=headers,
                                 gate=gate)

    def post_json(self, service: Service, url: str, body: Any, *,
                  headers: Mapping[str, str] | None = None, gate: Gate | None = None) -> Any:
        return self.request_json(service, "POST", url, headers=headers, body=body, gate=gate)

    def request_json(self, service: Service, method: str, url: str, *,
                     params: Mapping[str, Any] | None = None,
                     headers: Mapping[str, str] | None = None, body: Any = None,
                     gate: Gate | None = None) -> Any:
        """One JSON request, retried as the module docstring says."""
        what = f"{method} {urlsplit(url).path or '/'}"
        request = _request(method, url, params, headers, body)
        attempts = max(1, self.policy.attempts)
        for attempt in range(1, attempts + 1):
            if gate is not None:
                gate.before()
            outcome = self._try(service, what, request, gate)
            if not isinstance(outcome, _Retriable):
                return outcome.value
            if attempt == attempts:
                raise SourceUnavailable(
                    f"{service.name} did not answer {what} after {attempts} tries "
                    f"(last: {outcome.detail}); run the sync again later", status=outcome.status)
            self._pause(service, what, outcome, attempt)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _try(self, service: Service, what: str, request: urllib.request.Request,
             gate: Gate | None = None) -> _Answer | _Retriable:
        try:
            status, headers, payload = self._send(request)
        except _TRANSPORT_ERRORS as exc:
            if gate is not None:
                gate.after(None, {}, b"")
            return _Retriable(f"no answer: {service.redact(_transport_detail(exc))}")
        if gate is None:
            return self._judge(service, what, status, headers, payload)
        return self._judge_gated(service, what, status, headers, payload, gate)

    def _judge_gated(self, service: Service, what: str, status: int, headers: Message,
                     payload: bytes, gate: Gate) -> _Answer | _Retriable:
        lowered = {name.lower(): value for name, value in headers.items()}
        if status == 429:
            wait = gate.after(status, lowered, payload) or 0.0
            if wait > self.policy.max_retry_after:
                raise SourceUnavailable(
                    f"{service.name} is rate limiting {what} for {wait:.0f} s; "
                    "run the sync again after that", status=429)
            return _Retriable("HTTP 429", 429, wait, gated=True)
        try:
            outcome = self._judge(service, what, status, headers, payload)
        except Exception:
            gate.after(status, lowered, payload)
            raise
        gate.after(status, lowered, payload,
                   outcome.value if isinstance(outcome, _Answer) else None)
        return outcome

    def _send(self, request: urllib.request.Request) -> tuple[int, Message, bytes]:
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers, error.read()

    def _judge(self, service: Service, what: str, status: int, headers: Message,
               payload: bytes) -> _Answer | _Retriable:
        if 200 <= status < 300:
            return _Answer(_decode(service, what, payload))
        if status in (401, 403):
            raise SourceAuthFailed(
                f"{service.name} refused the credentials (HTTP {status} to {what}); "
                f"{service.auth_hint}", status=status)
        if status == 429:
            return _Retriable("HTTP 429", 429, self._retry_after(service, what, headers))
        if status >= 500:
            return _Retriable(f"HTTP {status}", status)
        raise SourceUnavailable(
            f"{service.name} answered HTTP {status} to {what}: "
            f"{service.redact(_excerpt(payload))}; {service.request_hint}", status=status)

    def _retry_after(self, service: Service, what: str, headers: Message) -> float | None:
        wait = _retry_after_seconds(headers.get("Retry-After"), self._clock)
        if wait is not None and wait > self.policy.max_retry_after:
            raise SourceUnavailable(
                f"{service.name} is rate limiting {what} for {wait:.0f} s; "
                "run the sync again after that", status=429)
        return wait

    def _pause(self, service: Service, what: str, outcome: _Retriable, attempt: int) -> None:
        delay = outcome.wait if outcome.wait is not None else self.policy.backoff(attempt)
        event(log, logging.WARNING, "source request failed; retrying", service=service.name,
              request=what, failure=outcome.detail, attempt=attempt, delay_seconds=delay)
        if not outcome.gated:  # a gated retry waits in gate.before(), with its class
            self._sleep(delay)


@dataclass(frozen=True, slots=True)
class _Answer:
    value: Any


def checked_base_url(url: str, setting: str) -> tuple[str, str]:
    """(`url` without a trailing slash, its lower-case host); ValueError naming `setting` when
    it is not an http(s) URL with a host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{setting} must be an http(s) URL such as https://host, got {url!r}")
    return url.strip().rstrip("/"), parts.hostname.lower()


def _request(method: str, url: str, params: Mapping[str, Any] | None,
             headers: Mapping[str, str] | None, body: Any) -> urllib.request.Request:
    query = urlencode({k: str(v) for k, v in params.items()}) if params else ""
    all_headers = {"Accept": "application/json", "User-Agent": _USER_AGENT, **(headers or {})}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    full_url = f"{url}?{query}" if query else url
    return urllib.request.Request(full_url, data=data, method=method, headers=all_headers)


def _decode(service: Service, what: str, payload: bytes) -> Any:
    if not payload.strip():
        return None
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceUnavailable(
            f"{service.name} answered {what} with something that is not JSON "
            f"({service.redact(_excerpt(payload))}); {service.request_hint}") from exc


def _retry_after_seconds(value: str | None, clock: Callable[[], float]) -> float | None:
    """`Retry-After` as seconds from now: a number of seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - clock())
    except (TypeError, ValueError, IndexError):
        return None  # unreadable: fall back to the backoff


def _excerpt(payload: bytes) -> str:
    """The gist of an error body on one line: Jira's `errorMessages`/`errors`, Trello's
    `message`, or else the text itself, cut short."""
    text = payload.decode("utf-8", "replace")
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        parts = [*_strings(decoded.get("errorMessages")), *_strings(decoded.get("errors")),
                 *_strings(decoded.get("message")), *_strings(decoded.get("error"))]
        text = "; ".join(parts) or text
    text = re.sub(r"\s+", " ", text).strip() or "(empty body)"
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS - 1] + "…"


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    if isinstance(value, dict):
        return [f"{key}: {item}" for key, item in value.items() if isinstance(item, str)]
    return []


def _transport_detail(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # URLError wraps the socket error
    cause = reason if isinstance(reason, BaseException) else exc
    text = re.sub(r"\s+", " ", str(cause)).strip()
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__
