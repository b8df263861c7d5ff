"""`python -m bench.gateway`: the webhook gateway under sustained load, on loopback.

Workload (issue 3): exactly 20,000 signed `jira:issue_updated` bodies of about 600 bytes, sent
at 1,000 requests/s for 20 s to `POST /webhooks/jira` of a real `boxsync worker` process (with
its stage processes consuming what it publishes, as in production), from a pool of concurrent
aiohttp client sessions. The schedule is open-loop: request n is due at start + n/rate whether
or not earlier ones have been answered, and its latency counts from when it was due, so a
stalled server shows as latency instead of silently slowing the sender down.

Target: 1,000 requests/s sustained with p99 latency under 50 ms, every request answered 202
(a 202 means the record is acknowledged by the broker). The run ends by checking that the raw
topic holds one record per 202. It starts its own topics (a fresh prefix), scratch database
and worker, and removes them when done; it talks only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from confluent_kafka import Consumer, TopicPartition
from pydantic import SecretStr

from bench.pipeline import make_workload
from bench.results import Row, record, verdict
from bench.scratch import scratch_database
from processors.settings import Settings, load_settings
from schemas.topics import JIRA_EVENTS
from tests.support.kafka import (
    WorkerProcess,
    create_topics,
    delete_topics,
    free_port,
    worker_env,
)

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
SECRET = "bench-gateway-secret"
TARGET_RATE = 1000.0
TARGET_P99_MS = 50.0
WARMUP_REQUESTS = 200
TICK_SECONDS = 0.002
REQUEST_TIMEOUT_SECONDS = 30.0


@dataclass
class Results:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    first_due: float = 0.0
    last_done: float = 0.0
    send_lag_ms: float = 0.0  # the worst delay between due time and send, client side

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != "202")

    @property
    def accepted(self) -> int:
        return self.statuses.get("202", 0)


def signed_requests(count: int) -> list[tuple[bytes, dict[str, str]]]:
    """(body, headers) of `count` distinct Jira deliveries, signed with SECRET."""
    workload = make_workload(count, max(1, count // 10), 100.0)
    requests = []
    for _key, body in workload.bodies:
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        requests.append((body, {"Content-Type": "application/json",
                                "X-Hub-Signature": f"sha256={signature}",
                                "X-Atlassian-Webhook-Identifier": str(uuid.uuid4()),
                                "X-Atlassian-Webhook-Flow": "Primary"}))
    return requests


async def drive(url: str, requests: list[tuple[bytes, dict[str, str]]], rate: float,
                sessions: int, connections: int) -> Results:
    """Send `requests` open-loop at `rate` per second, spread over `sessions` client sessions
    of `connections` keep-alive connections each."""
    results = Results()
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    pool = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections),
                                  timeout=timeout) for _ in range(sessions)]
    loop = asyncio.get_running_loop()

    async def send(session: aiohttp.ClientSession, due: float, body: bytes,
                   headers: dict[str, str]) -> None:
        results.send_lag_ms = max(results.send_lag_ms, (loop.time() - due) * 1000)
        try:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                status = str(response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = type(exc).__name__
        done = loop.time()
        results.statuses[status] = results.statuses.get(status, 0) + 1
        results.latencies_ms.append((done - due) * 1000)
        results.last_done = max(results.last_done, done)

    tasks: list[asyncio.Task[None]] = []
    try:
        start = loop.time() + 0.05
        results.first_due = start
        for n, (body, headers) in enumerate(requests):
            due = start + n / rate
            delay = due - loop.time()
            if delay > TICK_SECONDS:
                await asyncio.sleep(delay)
            tasks.append(loop.create_task(send(pool[n % sessions], due, body, headers)))
        await asyncio.gather(*tasks)
    finally:
        for session in pool:
            await session.close()
    return results


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def records_on(settings: Settings, topic_name: str) -> int:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"bench-{uuid.uuid4()}"})
    try:
        partitions = consumer.list_topics(topic_name, timeout=10).topics[topic_name].partitions
        total = 0
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic_name, partition),
                                                       timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def run_worker(settings: Settings, warmup: list[tuple[bytes, dict[str, str]]],
               measured: list[tuple[bytes, dict[str, str]]], args: argparse.Namespace
               ) -> tuple[Results, Results]:
    """A worker on a scratch database of its own (bench.scratch): the warm-up, then the
    measured requests."""
    log = ROOT / ".local" / "bench-gateway-worker.log"
    with scratch_database(settings, "gateway") as scratch:
        worker = WorkerProcess(worker_env(
            settings.model_copy(update={"database_url": SecretStr(scratch.url)}),
            BOXSYNC_WEB_PORT=str(free_port()), BOXSYNC_WEB_BIND=HOST,
            BOXSYNC_JIRA_WEBHOOK_SECRET=SECRET, BOXSYNC_LOG_LEVEL="WARNING"), log)
        try:
            worker.start()
            url = f"http://{HOST}:{worker.port}/webhooks/jira"
            warm = asyncio.run(drive(url, warmup, 200.0, args.sessions, args.connections))
            if warm.errors:
                raise SystemExit(f"warm-up failed: {warm.statuses}; worker log: {log}")
            return warm, asyncio.run(drive(url, measured, args.rate, args.sessions,
                                           args.connections))
        finally:
            worker.stop()
            # faust's data directory, `<app id>-data` in the worker's working directory
            shutil.rmtree(ROOT / f"{settings.topic_prefix}boxsync-data", ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=TARGET_RATE)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32,
                        help="keep-alive connections per session")
    args = parser.parse_args()

    base = load_settings()
    if not base.local_dir.is_absolute():
        base = base.model_copy(update={"local_dir": ROOT / base.local_dir})
    prefix = f"benchgw{uuid.uuid4().hex[:6]}."
    settings = base.model_copy(update={"topic_prefix": prefix, "web_bind": HOST})
    requests = signed_requests(WARMUP_REQUESTS + args.requests)
    warmup, measured = requests[:WARMUP_REQUESTS], requests[WARMUP_REQUESTS:]
    mean = sum(len(body) for body, _ in measured) / len(measured)
    print(f"workload: {len(measured):,} signed jira:issue_updated bodies, mean {mean:.0f} "
          f"bytes, at {args.rate:,.0f} req/s for {len(measured) / args.rate:.0f} s from "
          f"{args.sessions} sessions x {args.connections} connections; {os.cpu_count()} cores")

    create_topics(settings)
    try:
        warm, results = run_worker(settings, warmup, measured, args)
        stored = records_on(settings, JIRA_EVENTS.full_name(prefix))
    finally:
        delete_topics(base.kafka_bootstrap, prefix)

    span = results.last_done - results.first_due
    rate = results.accepted / span
    p50 = percentile(results.latencies_ms, 0.50)
    p99 = percentile(results.latencies_ms, 0.99)
    worst = max(results.latencies_ms)
    print(f"answers: {dict(sorted(results.statuses.items()))}; on jira.events: {stored:,} "
          f"records for {warm.accepted + results.accepted:,} 202s (warm-up included); "
          f"client send lag max {results.send_lag_ms:.1f} ms; latency max {worst:.1f} ms")
    met = (rate >= TARGET_RATE * 0.99 and p99 < TARGET_P99_MS and results.errors == 0
           and stored == warm.accepted + results.accepted)
    print(f"gateway: {rate:,.0f} req/s accepted over {span:.2f} s, p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms, {results.errors} errors; target ({TARGET_RATE:,.0f} req/s "
          f"sustained, p99 < {TARGET_P99_MS:.0f} ms) {'met' if met else 'NOT met'}")
    record("gateway", [
        Row("gateway accepted rate", f"{rate:,.0f} req/s", f"{TARGET_RATE:,.0f} req/s sustained",
            verdict(rate >= TARGET_RATE * 0.99 and results.errors == 0)),
        Row("gateway p50 / p99 latency", f"{p50:.1f} / {p99:.1f} ms",
            f"p99 < {TARGET_P99_MS:.0f} ms", verdict(met))])


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
