"""The webhook gateway (contract §7) of a real `boxsync worker`, over real HTTP on loopback:
what it accepts lands byte for byte on the raw topics, what it refuses lands nowhere."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from processors.metrics import Metrics
from processors.runtime.kafka import producer_config
from processors.settings import Settings, load_settings
from processors.web import webhooks
from processors.web.webhooks import Gateway, Publisher, PublishError, sources
from schemas.topics import JIRA_EVENTS, TRELLO_EVENTS
from tests.support import jira_bodies as jb
from tests.support.kafka import WorkerProcess, free_port, read_records

pytestmark = pytest.mark.integration

JIRA_SECRET = "jira-webhook-secret-ü"
TRELLO_SECRET = "trello-app-secret"
CALLBACK = "https://boxsync.example.com/webhooks/trello"
MAX_BYTES = 2048


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]


def request(worker: WorkerProcess, method: str, path: str,
            body: bytes | Iterable[bytes] | None = None,
            headers: dict[str, str] | None = None) -> Reply:
    req = urllib.request.Request(f"http://127.0.0.1:{worker.port}{path}", data=body,
                                 headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=20) as response:
            return Reply(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.read(), dict(exc.headers))


def jira_signature(body: bytes, secret: str = JIRA_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def trello_signature(message: bytes) -> str:
    return base64.b64encode(hmac.new(TRELLO_SECRET.encode(), message, hashlib.sha1)
                            .digest()).decode()


def jira_body(key: str, summary: str) -> bytes:
    """Pretty-printed, non-ASCII, keys unsorted: any re-serialisation would show."""
    the_issue = jb.issue("gw.atlassian.net", "10042", key, summary=summary)
    body = jb.updated(int(time.time() * 1000), jb.user("557058:alice", "Alice"), the_issue,
                      777, [jb.item("summary", summary)])
    return (json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode()


def trello_body(card_id: str) -> bytes:
    return json.dumps({"action": {"id": "64b7f0c2a1b2c3d4e5f60718", "type": "updateCard",
                                  "date": "2024-05-01T10:00:00.000Z",
                                  "data": {"card": {"id": card_id, "name": "Café"}}},
                       "model": {"id": "64b7f0c2a1b2c3d4e5f60000"}},
                      ensure_ascii=False).encode()


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    """An iterable body: urllib sends it chunked, without Content-Length."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


def webhook_counts(worker: WorkerProcess) -> dict[tuple[str, str], float]:
    status, body = worker.http("/metrics")
    assert status == 200
    counts = {}
    for line in body.decode().splitlines():
        if line.startswith("boxsync_webhook_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            parsed = dict(part.split("=") for part in labels[labels.index("{") + 1:-1]
                          .split(","))
            counts[(parsed["source"].strip('"'), parsed["outcome"].strip('"'))] = float(value)
    return counts


def test_gateway(settings: Settings, start_worker: Any, subtests: Any) -> None:
    worker: WorkerProcess = start_worker(
        settings, BOXSYNC_JIRA_WEBHOOK_SECRET=JIRA_SECRET,
        BOXSYNC_TRELLO_APP_SECRET=TRELLO_SECRET, BOXSYNC_TRELLO_CALLBACK_URL=CALLBACK,
        BOXSYNC_MAX_EVENT_BYTES=str(MAX_BYTES))
    accepted_jira: list[tuple[bytes, dict[str, bytes]]] = []
    accepted_trello: list[bytes] = []

    with subtests.test("signed Jira body is accepted"):
        body = jira_body("GW-1", "Résumé «draft»")
        delivery = str(uuid.uuid4())
        reply = request(worker, "POST", "/webhooks/jira", body, {
            "Content-Type": "application/json", "X-Hub-Signature": jira_signature(body),
            "X-Atlassian-Webhook-Identifier": delivery, "X-Atlassian-Webhook-Retry": "2",
            "X-Atlassian-Webhook-Flow": "Primary"})
        assert (reply.status, json.loads(reply.body)) == (202, {"accepted": True})
        accepted_jira.append((body, {"x-atlassian-webhook-identifier": delivery.encode(),
                                     "x-atlassian-webhook-retry": b"2",
                                     "x-atlassian-webhook-flow": b"Primary"}))

    with subtests.test("signed chunked Jira body under the limit is accepted"):
        body = jira_body("GW-2", "chunked")
        assert len(body) <= MAX_BYTES
        reply = request(worker, "POST", "/webhooks/jira", chunks(body, 100),
                        {"X-Hub-Signature": jira_signature(body)})
        assert reply.status == 202
        accepted_jira.append((body, {}))

    with subtests.test("bad or missing Jira signature is 401"):
        body = jira_body("GW-3", "forged")
        for headers in ({"X-Hub-Signature": jira_signature(body, "wrong secret")},
                        {"X-Hub-Signature": jira_signature(body + b" ")},
                        {"X-Hub-Signature": "sha1=" + hmac.new(
                            JIRA_SECRET.encode(), body, hashlib.sha1).hexdigest()},
                        {}):
            assert request(worker, "POST", "/webhooks/jira", body, headers).status == 401

    with subtests.test("Jira body over the limit is 413"):
        big = jira_body("GW-4", "x" * MAX_BYTES)
        assert len(big) > MAX_BYTES
        signed = {"X-Hub-Signature": jira_signature(big)}
        assert request(worker, "POST", "/webhooks/jira", big, signed).status == 413
        # Without Content-Length: read in pieces and cut at the limit.
        reply = request(worker, "POST", "/webhooks/jira", chunks(big * 20, 1000), signed)
        assert reply.status == 413

    with subtests.test("invalid JSON, correctly signed, is 400"):
        for bad in (b'{"issue": {"key": "GW-5"', b"", b"\xff\xfe{}"):
            reply = request(worker, "POST", "/webhooks/jira", bad,
                            {"X-Hub-Signature": jira_signature(bad)})
            assert reply.status == 400

    with subtests.test("Trello HEAD is 200 with no body"):
        reply = request(worker, "HEAD", "/webhooks/trello")
        assert (reply.status, reply.body) == (200, b"")
        assert reply.headers.get("Content-Length", "0") == "0"

    with subtests.test("signed Trello POST is accepted"):
        body = trello_body("64b7f0c2a1b2c3d4e5f6aaaa")
        reply = request(worker, "POST", "/webhooks/trello", body,
                        {"X-Trello-Webhook": trello_signature(body + CALLBACK.encode())})
        assert (reply.status, json.loads(reply.body)) == (202, {"accepted": True})
        accepted_trello.append(body)

    with subtests.test("Trello signature over the body alone, or another callback, is 401"):
        body = trello_body("64b7f0c2a1b2c3d4e5f6bbbb")
        for signature in (trello_signature(body), trello_signature(body + CALLBACK.encode()
                                                                   + b"/")):
            reply = request(worker, "POST", "/webhooks/trello", body,
                            {"X-Trello-Webhook": signature})
            assert reply.status == 401

    with subtests.test("jira.events holds exactly the accepted bodies, byte for byte"):
        records = read_records(settings, JIRA_EVENTS.name, expect=len(accepted_jira))
        assert sorted((r.value, r.headers) for r in records) == sorted(accepted_jira)
        assert sorted(r.key or b"" for r in records) == [b"GW-1", b"GW-2"]

    with subtests.test("trello.events holds exactly the accepted body, keyed by card"):
        records = read_records(settings, TRELLO_EVENTS.name, expect=len(accepted_trello))
        assert [(r.key, r.value) for r in records] == [(b"64b7f0c2a1b2c3d4e5f6aaaa",
                                                        accepted_trello[0])]

    with subtests.test("outcomes are counted"):
        assert webhook_counts(worker) == {
            ("jira", "accepted"): 2, ("jira", "unauthorized"): 4, ("jira", "too_large"): 2,
            ("jira", "invalid_json"): 3, ("trello", "accepted"): 1,
            ("trello", "unauthorized"): 2}


class FakeRequest:
    """What the gateway reads of an aiohttp request: length, body stream, headers."""

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        self.content_length = len(body)
        self.headers = CIMultiDictProxy(CIMultiDict(headers))
        self.content = self
        self._rest = body

    async def read(self, n: int = -1) -> bytes:
        n = len(self._rest) if n < 0 else n
        chunk, self._rest = self._rest[:n], self._rest[n:]
        return chunk


def test_delivery_failure_is_503_and_never_202() -> None:
    """No broker answers: the delivery times out, the sender hears 503 and will retry."""
    settings = load_settings(kafka_bootstrap=f"127.0.0.1:{free_port()}",
                             jira_webhook_secret=JIRA_SECRET)
    metrics = Metrics.create()
    publisher = Publisher(producer_config(settings, None, **{"message.timeout.ms": 1000}))
    gateway = Gateway(settings, metrics, publisher)
    jira, _trello = sources(settings)
    body = jira_body("GW-9", "lost")

    async def run() -> tuple[int, str]:
        with pytest.raises(PublishError):
            await publisher.publish("jira.events", body, None, [])
        outcome = await gateway.handle(jira, FakeRequest(  # type: ignore[arg-type]
            body, {"X-Hub-Signature": jira_signature(body)}))
        await publisher.stop()
        return outcome.status, outcome.label

    assert asyncio.run(run()) == (503, "unavailable")
    assert metrics.registry.get_sample_value(
        "boxsync_webhook_requests_total", {"source": "jira", "outcome": "unavailable"}) == 1


class TricklingRequest(FakeRequest):
    """A sender that sends the first byte of its body and then nothing (slowloris)."""

    async def read(self, n: int = -1) -> bytes:
        if self._rest.startswith(b"{"):
            self._rest = self._rest[1:]
            return b"{"
        await asyncio.sleep(3600)
        return b""


def test_a_body_that_trickles_in_is_cut_off_with_408(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by `make chaos`: connections dripping a body a byte at a time were held open for
    as long as the sender liked."""
    monkeypatch.setattr(webhooks, "BODY_READ_SECONDS", 0.2)
    settings = load_settings(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    metrics = Metrics.create()
    gateway = Gateway(settings, metrics, Publisher(producer_config(settings, None)))
    jira, _trello = sources(settings)

    async def run() -> tuple[int, float]:
        began = time.monotonic()
        outcome = await gateway.handle(jira, TricklingRequest(  # type: ignore[arg-type]
            jira_body("GW-10", "slow"), {}))
        return outcome.status, time.monotonic() - began

    status, took = asyncio.run(run())
    assert status == 408 and took < 2
    assert metrics.registry.get_sample_value(
        "boxsync_webhook_requests_total", {"source": "jira", "outcome": "too_slow"}) == 1
