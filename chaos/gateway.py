"""Part `gateway`: the webhook endpoints of a real worker under hostile requests.

- bad signatures: forged, missing, replayed with another body, wrong algorithm (Jira and
  Trello, each kind in turn): every one 401, and nothing of them on a topic; a few properly
  signed requests among them must still be 202 and be the only records published;
- oversize bodies (a Content-Length over the limit, and chunked bodies with none): 413, and
  the worker's memory and threads do not pile up;
- slowloris: many connections that send their headers or body a byte at a time: the worker
  cuts them off, keeps answering others at once, and gains no threads or memory.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from chaos.bodies import Generator, now_ms
from chaos.report import Report
from chaos.stack import ChaosStack, Worker, run_id
from chaos.topics import delete_topics, read_topic

PART = "gateway"
JIRA_SECRET = b"chaos-jira-secret"
TRELLO_SECRET = b"chaos-trello-secret"
CALLBACK = "https://chaos.example/webhooks/trello"
BAD_KINDS = ("jira_forged", "jira_missing", "jira_replayed", "jira_wrong_algorithm",
             "trello_forged", "trello_missing", "trello_replayed", "trello_wrong_algorithm")


@dataclass(frozen=True)
class GatewayConfig:
    bad: int  # requests with a bad signature
    good: int  # properly signed ones among them
    oversize: int
    slow: int  # slowloris connections
    slow_seconds: float  # how long they try


FULL = GatewayConfig(10_000, 200, 200, 400, 40.0)
QUICK = GatewayConfig(2_000, 50, 20, 100, 15.0)


def jira_signature(body: bytes, secret: bytes = JIRA_SECRET, method: str = "sha256") -> str:
    return f"{method}=" + hmac.new(secret, body, getattr(hashlib, method)).hexdigest()


def trello_signature(body: bytes, digest: str = "sha1", url: str = CALLBACK) -> str:
    mac = hmac.new(TRELLO_SECRET, body + url.encode(), getattr(hashlib, digest)).digest()
    return base64.b64encode(mac).decode()


def bad_request(kind: str, body: bytes, other: bytes, rng: random.Random
                ) -> tuple[str, dict[str, str]]:
    """(path, headers) of one request whose signature must not pass."""
    if kind.startswith("jira"):
        header = "X-Hub-Signature"
        value = {"jira_forged": lambda: "sha256=" + rng.randbytes(32).hex(),
                 "jira_missing": lambda: "",
                 "jira_replayed": lambda: jira_signature(other),
                 "jira_wrong_algorithm": lambda: rng.choice((
                     jira_signature(body, method="sha1"), jira_signature(body, method="sha512"),
                     jira_signature(body, method="md5"),
                     "sha384=" + jira_signature(body).split("=", 1)[1],
                     jira_signature(body, secret=b""))),
                 }[kind]()
        return "/webhooks/jira", ({header: value} if value else {})
    header = "X-Trello-Webhook"
    value = {"trello_forged": lambda: base64.b64encode(rng.randbytes(20)).decode(),
             "trello_missing": lambda: "",
             "trello_replayed": lambda: trello_signature(other),
             "trello_wrong_algorithm": lambda: rng.choice((
                 trello_signature(body, "sha256"), trello_signature(body, url=""),
                 trello_signature(body, url=CALLBACK + "/"), trello_signature(body, "md5"))),
             }[kind]()
    return "/webhooks/trello", ({header: value} if value else {})


async def _send(session: aiohttp.ClientSession, url: str, body: bytes | AsyncIterator[bytes],
                headers: dict[str, str]) -> int:
    try:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            return response.status
    except (TimeoutError, aiohttp.ClientError):
        return 0


async def signatures(worker: Worker, config: GatewayConfig, rng: random.Random,
                     run_tag: str) -> tuple[Counter[tuple[str, int]], float]:
    """The bad requests (with the good ones spread among them): (kind, status) counts."""
    generator = Generator(run_tag, 50, seed=rng.randrange(2**30))
    plan: list[tuple[str, bytes]] = []
    for n in range(config.bad + config.good):
        kind = "good" if n % max(1, (config.bad + config.good) // config.good) == 0 and \
            sum(1 for k, _ in plan if k == "good") < config.good else BAD_KINDS[n % 8]
        body = generator.body(now_ms()).value
        plan.append((kind, body))
    results: Counter[tuple[str, int]] = Counter()
    base = f"http://127.0.0.1:{worker.port}"
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            kind, body = queue.get_nowait()
            if kind == "good":
                trello = rng.random() < 0.5
                path = "/webhooks/trello" if trello else "/webhooks/jira"
                headers = ({"X-Trello-Webhook": trello_signature(body)} if trello
                           else {"X-Hub-Signature": jira_signature(body)})
            else:
                other = body.replace(b"revision", b"REVISION", 1) + b" "
                path, headers = bad_request(kind, body, other, rng)
                # The bad bodies say so, to find any of them on a topic.
                body = body.replace(b'"timestamp"', b'"chaos_bad":1,"timestamp"', 1) \
                    if kind.startswith("jira") else body[:-1] + b',"chaos_bad":1}'
            headers["Content-Type"] = "application/json"
            results[(kind, await _send(session, base + path, body, headers))] += 1

    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(32)))
    return results, time.monotonic() - started


async def oversize(worker: Worker, config: GatewayConfig, limit: int
                   ) -> tuple[Counter[int], int, int]:
    """Bodies over the limit, half with a Content-Length, half chunked: statuses, and the
    main process's peak RSS growth (bytes) and thread growth while they come."""
    url = f"http://127.0.0.1:{worker.port}/webhooks/jira"
    big = b'{"webhookEvent":"jira:issue_updated","x":"' + b"a" * (limit * 2) + b'"}'
    before_rss, before_threads = worker.memory()["main"]
    peak = [before_rss, before_threads]
    statuses: Counter[int] = Counter()

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 64 * 1024):
            yield big[start:start + 64 * 1024]

    async def sample() -> None:
        while True:
            rss, threads = worker.memory().get("main", (0, 0))
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], threads)
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for start in range(0, config.oversize, 20):
            batch = range(start, min(config.oversize, start + 20))
            found = await asyncio.gather(*(
                _send(session, url, big if n % 2 else chunked(),
                      {"X-Hub-Signature": jira_signature(big),
                       "Content-Type": "application/json"}) for n in batch))
            statuses.update(found)
    sampler.cancel()
    return statuses, peak[0] - before_rss, peak[1] - before_threads


async def _slow_client(port: int, mode: str, seconds: float) -> float | None:
    """One slowloris connection: a byte of headers (or of the body) at a time. Returns when
    the server closed it (seconds after the start), or None if it stayed open throughout."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0.0
    head = (b"POST /webhooks/jira HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100000\r\n")
    if mode == "body":
        writer.write(head + b"\r\n")
        drip = b"{" + b" " * 10_000
    else:
        writer.write(b"POST /webhooks/jira HTTP/1.1\r\n")
        drip = b"X-Slow: " + b"a" * 10_000
    try:
        for byte in drip:
            if time.monotonic() - started > seconds:
                break
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1024), timeout=0.5) == b"" \
                        or reader.at_eof():
                    return time.monotonic() - started
                return time.monotonic() - started  # the server answered (408, 400, ...)
            except TimeoutError:
                continue
        return None
    except (ConnectionError, OSError):
        return time.monotonic() - started
    finally:
        writer.close()


async def slowloris(worker: Worker, config: GatewayConfig
                    ) -> tuple[list[float | None], list[float], int, int]:
    """(per connection: when it was cut off or None, latencies of good requests meanwhile,
    peak thread and RSS growth of the main process)."""
    before_rss, before_threads = worker.memory()["main"]
    clients = [asyncio.create_task(_slow_client(worker.port, "body" if n % 2 else "headers",
                                                config.slow_seconds))
               for n in range(config.slow)]
    latencies: list[float] = []
    peak = [before_rss, before_threads]
    url = f"http://127.0.0.1:{worker.port}/webhooks/jira"
    generator = Generator(run_id(), 10, seed=5)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        while not all(task.done() for task in clients):
            body = generator.body(now_ms()).value
            began = time.monotonic()
            status = await _send(session, url, body, {"X-Hub-Signature": jira_signature(body),
                                                      "Content-Type": "application/json"})
            latencies.append(time.monotonic() - began if status == 202 else float("inf"))
            rss, threads = worker.memory().get("main", (0, 0))
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], threads)
            await asyncio.sleep(0.5)
    cut = [task.result() for task in clients]
    return cut, latencies, peak[1] - before_threads, peak[0] - before_rss


def run(stack: ChaosStack, report: Report, config: GatewayConfig, seed: int) -> None:
    run_tag = run_id()
    settings = stack.prepare(f"chaos{run_tag}-gateway.")
    # Only the webhook gateway matters here: one ingest process keeps the broker busy
    # reading what is accepted, as in production, and costs the least CPU.
    worker = Worker(stack, settings, f"gateway-{run_tag}",
                    BOXSYNC_JIRA_WEBHOOK_SECRET=JIRA_SECRET.decode(),
                    BOXSYNC_TRELLO_APP_SECRET=TRELLO_SECRET.decode(),
                    BOXSYNC_TRELLO_CALLBACK_URL=CALLBACK,
                    BOXSYNC_WORKER_STAGES="ingest", BOXSYNC_INGEST_PROCESSES="1")
    rng = random.Random(seed)
    try:
        worker.start()
        results, took = asyncio.run(signatures(worker, config, rng, run_tag))
        sizes, size_rss, size_threads = asyncio.run(
            oversize(worker, config, settings.max_event_bytes))
        cut, latencies, slow_threads, slow_rss = asyncio.run(slowloris(worker, config))
        time.sleep(1)
        idle_threads = worker.memory()["main"][1]
        records = [*read_topic(settings, "jira.events"), *read_topic(settings, "trello.events")]
        _verdicts(report, config, results, took, sizes, size_rss, size_threads, cut,
                  latencies, slow_threads, slow_rss, records, settings.max_event_bytes,
                  idle_threads)
    finally:
        worker.stop()
        delete_topics(settings)


def _verdicts(report: Report, config: GatewayConfig, results: Counter[tuple[str, int]],
              took: float, sizes: Counter[int], size_rss: int, size_threads: int,
              cut: list[float | None], latencies: list[float], slow_threads: int,
              slow_rss: int, records: list, limit: int, idle_threads: int) -> None:
    bad = {kind: Counter({status: n for (k, status), n in results.items() if k == kind})
           for kind in BAD_KINDS}
    bad_total = sum(sum(c.values()) for c in bad.values())
    refused = sum(c.get(401, 0) for c in bad.values())
    report.check(PART, f"{bad_total:,} bad signatures in {took:.0f} s (forged, missing, "
                 "replayed, wrong algorithm; Jira and Trello)",
                 "all 401", f"{refused:,} 401" + "".join(
                     f"; {kind} {dict(c)}" for kind, c in bad.items() if set(c) != {401}),
                 refused == bad_total and bad_total == config.bad)
    good = Counter({status: n for (k, status), n in results.items() if k == "good"})
    report.check(PART, f"{sum(good.values())} properly signed requests among them",
                 "all 202", dict(good), set(good) == {202})
    leaked = sum(1 for r in records if r.value is not None and b'"chaos_bad"' in r.value)
    oversized = sum(1 for r in records if r.value is not None and len(r.value) > limit)
    accepted = good.get(202, 0) + sum(1 for x in latencies if x != float("inf"))
    report.check(PART, "records on the raw topics", f"{accepted} (the 202s), 0 bad, 0 oversize",
                 f"{len(records)}, {leaked} bad, {oversized} oversize",
                 len(records) == accepted and leaked == 0 and oversized == 0)
    report.check(PART, f"{config.oversize} bodies of {2 * limit / 2**20:.0f} MiB (half chunked, "
                 "20 at a time)", "all 413; RSS +<64 MiB, threads +<=2",
                 f"{dict(sizes)}; RSS {size_rss / 2**20:+.0f} MiB, threads {size_threads:+d}",
                 set(sizes) == {413} and size_rss < 64 * 2**20 and size_threads <= 2)
    # Even clients drip a body, odd ones their headers (see slowloris).
    body_cut = [at for at in cut[1::2] if at is not None]
    head_cut = [at for at in cut[0::2] if at is not None]
    report.check(PART, f"slowloris: {len(cut[1::2])} connections dripping a body for "
                 f"{config.slow_seconds:.0f} s", "all cut off by the server (408)",
                 f"{len(body_cut)} cut off" + (f" after {min(body_cut):.0f}-{max(body_cut):.0f}"
                                               " s" if body_cut else ""),
                 len(body_cut) == len(cut[1::2]))
    report.figure(PART, f"slowloris: {len(cut[0::2])} connections dripping headers for "
                  f"{config.slow_seconds:.0f} s", f"{len(head_cut)} cut off (aiohttp has no "
                  "header timeout; they cost no thread, see below)")
    served = [x for x in latencies if x != float("inf")]
    worst = max(latencies) if latencies else float("nan")
    report.check(PART, "... signed requests meanwhile", "all 202 within 1 s",
                 f"{len(served)} of {len(latencies)} 202, slowest {worst:.2f} s",
                 bool(latencies) and len(served) == len(latencies) and worst <= 1.0)
    report.check(PART, "... worker main process meanwhile", "threads +<=2, RSS +<64 MiB",
                 f"threads {slow_threads:+d} (idle after: {idle_threads}), RSS "
                 f"{slow_rss / 2**20:+.0f} MiB", slow_threads <= 2 and slow_rss < 64 * 2**20)
