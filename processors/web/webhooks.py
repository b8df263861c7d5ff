"""The webhook gateway (contract §7): Jira and Trello deliveries into the raw topics.

`POST /webhooks/jira`, `POST /webhooks/trello` and `HEAD /webhooks/trello` on the worker's web
server. A request is checked in this order, and nothing refused reaches a topic:

1. size: a `Content-Length` over `max_event_bytes` is refused before any of the body is read,
   and a body without one (chunked) is read in pieces and refused as soon as it passes the
   limit → 413; a body not all there within BODY_READ_SECONDS (a slow sender) → 408;
2. signature, when that source's secret is set (upstream-formats §C1, §D) → 401;
3. JSON (`orjson.loads`) → 400.

An accepted body is published as its raw bytes, unchanged (the signature covers those bytes),
with Jira's delivery headers, keyed by the issue key or the Trello card id when the body has one.
The 202 is sent only once the broker has acknowledged the record (idempotent producer, acks
all); a failed or timed-out delivery is 503, so the sender retries. The secrets and the bodies
are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import faust
import orjson
from aiohttp import web as aiohttp_web
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from faust.web import View
from mode import Service

from processors.logs import event
from processors.metrics import Metrics
from processors.runtime.kafka import producer_config, topic
from processors.settings import Settings
from processors.web.signatures import verify_jira, verify_trello
from schemas.topics import JIRA_EVENTS, TRELLO_EVENTS

log = logging.getLogger("boxsync.webhooks")

JIRA_SIGNATURE_HEADER = "X-Hub-Signature"
TRELLO_SIGNATURE_HEADER = "X-Trello-Webhook"
# Jira's delivery headers, passed through as Kafka record headers (lower-case names): the
# identifier is the dedupe key ingest uses.
PASSED_HEADERS = ("x-atlassian-webhook-identifier", "x-atlassian-webhook-retry",
                  "x-atlassian-webhook-flow")
READ_CHUNK_BYTES = 64 * 1024
# Jira and Trello send a body at once; one that trickles in for longer (slowloris) is cut off
# with 408, so that slow senders cannot hold connections open for good (`make chaos` held 200
# such connections open for as long as it liked).
BODY_READ_SECONDS = 10.0
# librdkafka gives up on a record after this long (and reports it to the delivery callback);
# Trello waits 30 s for an answer, so the sender hears 503 well before it gives up itself.
DELIVERY_TIMEOUT_MS = 10_000
# A last guard above librdkafka's own timeout, should a delivery report never come.
DELIVERY_WAIT_SECONDS = DELIVERY_TIMEOUT_MS / 1000 + 5
POLL_SECONDS = 0.1
STOP_FLUSH_SECONDS = 10.0


class PublishError(Exception):
    """The record is not known to be on the topic."""


class _Client:
    """One producer and the thread that serves its delivery reports."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.fatal = False
        self.stopping = threading.Event()
        self.producer = Producer({**config, "error_cb": self._on_error})
        self.thread = threading.Thread(target=self._serve, name="boxsync-webhook-producer",
                                       daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            self.producer.poll(POLL_SECONDS)
        # Deliver (or fail) what is still in flight, so that no request waits on it.
        self.producer.flush(STOP_FLUSH_SECONDS)

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self.fatal = True
        event(log, logging.ERROR if error.fatal() else logging.WARNING,
              "webhook producer error", error=error.name(), fatal=error.fatal())

    def retire(self) -> None:
        self.stopping.set()


class Publisher:
    """The worker's one webhook producer (idempotent, so acks=all): `publish` returns when the
    broker has acknowledged the record, without blocking the event loop.

    The producer is made on first use (or when the worker starts) and replaced if it hits a
    fatal error (an idempotent producer cannot be used again after one)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config
        self._client: _Client | None = None
        self._stopped = False
        self._lock = threading.Lock()

    def start(self) -> None:
        self._current()

    def _current(self) -> _Client:
        with self._lock:
            if self._stopped:
                raise PublishError("the worker is stopping")
            if self._client is not None and self._client.fatal:
                self._client.retire()
                self._client = None
            if self._client is None:
                self._client = _Client(self._config)
            return self._client

    async def publish(self, topic_name: str, value: bytes, key: bytes | None,
                      headers: list[tuple[str, str | bytes | None]]) -> None:
        client = self._current()
        loop = asyncio.get_running_loop()
        delivered: asyncio.Future[None] = loop.create_future()

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            # Runs on the producer's thread: hand the outcome to the event loop.
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, delivered, error)

        try:
            client.producer.produce(topic_name, value=value, key=key, headers=headers,
                                    on_delivery=on_delivery)
        except (BufferError, KafkaException) as exc:
            raise PublishError(type(exc).__name__) from exc
        try:
            await asyncio.wait_for(delivered, DELIVERY_WAIT_SECONDS)
        except TimeoutError as exc:
            raise PublishError("no delivery report") from exc

    async def stop(self) -> None:
        with self._lock:
            self._stopped = True
            client, self._client = self._client, None
        if client is not None:
            client.retire()
            await asyncio.to_thread(client.thread.join, STOP_FLUSH_SECONDS + 5)


def _settle(future: asyncio.Future[None], error: KafkaError | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(PublishError(error.name()))


async def read_limited(request: aiohttp_web.Request, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is known to be longer than `limit` bytes."""
    length = request.content_length
    if length is not None and length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(min(READ_CHUNK_BYTES, limit - size + 1))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def jira_key(body: Any) -> bytes | None:
    """The issue key, when the body has `issue.key`."""
    issue = body.get("issue") if isinstance(body, dict) else None
    key = issue.get("key") if isinstance(issue, dict) else None
    return key.encode() if isinstance(key, str) and key else None


def trello_key(body: Any) -> bytes | None:
    """The card id, when the body has `action.data.card.id`."""
    node: Any = body
    for name in ("action", "data", "card", "id"):
        node = node.get(name) if isinstance(node, dict) else None
    return node.encode() if isinstance(node, str) and node else None


Check = Callable[[bytes, Mapping[str, str]], bool]


@dataclass(frozen=True)
class Source:
    name: str  # the `source` label: jira, trello
    topic: str
    # (raw body, request headers) → signature good; None when no secret is set.
    verify: Check | None
    key_of: Callable[[Any], bytes | None]


@dataclass(frozen=True)
class Outcome:
    status: int
    label: str  # the `outcome` label
    body: dict[str, Any]


ACCEPTED = Outcome(202, "accepted", {"accepted": True})
TOO_LARGE = Outcome(413, "too_large", {"accepted": False, "error": "body too large"})
UNAUTHORIZED = Outcome(401, "unauthorized", {"accepted": False, "error": "bad signature"})
INVALID_JSON = Outcome(400, "invalid_json", {"accepted": False, "error": "invalid JSON"})
TOO_SLOW = Outcome(408, "too_slow", {"accepted": False, "error": "body not sent in time"})
UNAVAILABLE = Outcome(503, "unavailable", {"accepted": False, "error": "not stored, retry"})


class Gateway:
    """The request handling, apart from the web framework."""

    def __init__(self, settings: Settings, metrics: Metrics, publisher: Publisher) -> None:
        self.settings = settings
        self.metrics = metrics
        self.publisher = publisher

    async def handle(self, source: Source, request: aiohttp_web.Request) -> Outcome:
        outcome = await self._handle(source, request)
        self.metrics.webhook_requests.labels(source.name, outcome.label).inc()
        return outcome

    async def _handle(self, source: Source, request: aiohttp_web.Request) -> Outcome:
        try:
            async with asyncio.timeout(BODY_READ_SECONDS):
                body = await read_limited(request, self.settings.max_event_bytes)
        except TimeoutError:
            return TOO_SLOW
        if body is None:
            return TOO_LARGE
        if source.verify is not None and not source.verify(body, request.headers):
            return UNAUTHORIZED
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return INVALID_JSON
        headers: list[tuple[str, str | bytes | None]] = [
            (name, value.encode("utf-8", "surrogateescape"))
            for name in PASSED_HEADERS if (value := request.headers.get(name)) is not None]
        try:
            await self.publisher.publish(source.topic, body, source.key_of(parsed), headers)
        except PublishError as exc:
            event(log, logging.WARNING, "webhook not stored", source=source.name,
                  reason=str(exc))
            return UNAVAILABLE
        return ACCEPTED


def sources(settings: Settings) -> tuple[Source, Source]:
    """(jira, trello), each checking its signature only when its secret is set."""
    jira_verify: Check | None = None
    trello_verify: Check | None = None
    if settings.jira_webhook_secret is not None:
        jira_verify = _jira_check(settings.jira_webhook_secret.get_secret_value().encode())
    if settings.trello_app_secret is not None:
        # Without a registered callback URL no signature can match: every POST is refused.
        trello_verify = _trello_check(settings.trello_app_secret.get_secret_value().encode(),
                                      settings.trello_callback_url or "")
    return (Source("jira", topic(settings, JIRA_EVENTS), jira_verify, jira_key),
            Source("trello", topic(settings, TRELLO_EVENTS), trello_verify, trello_key))


# Closures, not partials: a partial's repr would show the secret.
def _jira_check(secret: bytes) -> Check:
    def check(body: bytes, headers: Mapping[str, str]) -> bool:
        return verify_jira(secret, body, headers.get(JIRA_SIGNATURE_HEADER))
    return check


def _trello_check(secret: bytes, callback_url: str) -> Check:
    def check(body: bytes, headers: Mapping[str, str]) -> bool:
        return verify_trello(secret, body, callback_url, headers.get(TRELLO_SIGNATURE_HEADER))
    return check


def register_webhooks(app: faust.App, settings: Settings, metrics: Metrics) -> Gateway:
    """Add the webhook routes to the app's web server, and the producer to its lifecycle."""
    extra: dict[str, Any] = {"client.id": f"{settings.topic_prefix}boxsync-webhooks",
                             "message.timeout.ms": DELIVERY_TIMEOUT_MS}
    publisher = Publisher(producer_config(settings, None, **extra))
    gateway = Gateway(settings, metrics, publisher)
    jira, trello = sources(settings)
    if settings.trello_app_secret is not None and not settings.trello_callback_url:
        event(log, logging.WARNING, "BOXSYNC_TRELLO_APP_SECRET is set without "
              "BOXSYNC_TRELLO_CALLBACK_URL: no Trello signature can match, every POST is 401")

    def respond(view: View, outcome: Outcome) -> Any:
        return view.json(outcome.body, status=outcome.status)

    @app.service
    class WebhookProducer(Service):
        """Makes the producer with the worker; on stop, delivers what is in flight."""

        async def on_start(self) -> None:
            publisher.start()

        async def on_stop(self) -> None:
            await publisher.stop()

    @app.page("/webhooks/jira")
    class JiraWebhook(View):
        async def post(self, request: Any, **kwargs: Any) -> Any:
            return respond(self, await gateway.handle(
                jira, cast(aiohttp_web.Request, request)))

    @app.page("/webhooks/trello")
    class TrelloWebhook(View):
        async def head(self, request: Any, **kwargs: Any) -> Any:
            # Trello's check when a webhook is created: 200 and no body; nothing published.
            return self.bytes(b"", status=200)

        async def post(self, request: Any, **kwargs: Any) -> Any:
            return respond(self, await gateway.handle(
                trello, cast(aiohttp_web.Request, request)))

    return gateway
