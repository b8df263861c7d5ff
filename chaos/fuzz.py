"""Part `fuzz`: broken and odd bodies through a real worker; nothing may crash it, and every
record must end as a change, a reference event, a counted pass-over or a dead letter.

The bodies (chaos.fuzz_bodies): hypothesis strategies shaped after the upstream formats, and
named mutations of real bodies. They are published straight onto the raw topics (as an
upstream system with topic access would), each Jira record with a delivery id of its own, so
that every record can be followed: a change and a reference event name their origin
(topic, partition, offset), a dead letter its source partition and offset, and what is left
must equal the worker's count of records passed over.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer

from chaos.bodies import Body, Generator, now_ms
from chaos.fuzz_bodies import BIG, MUTATIONS, big_array, big_invalid, hypothesis_bodies, originals
from chaos.report import Report
from chaos.stack import ChaosStack, Worker, run_id
from chaos.topics import delete_topics, json_values, pipeline_lag, read_topic
from processors.settings import Settings
from schemas.topics import by_name

PART = "fuzz"


@dataclass(frozen=True)
class FuzzConfig:
    bodies: int
    hypothesis: int = 3_000  # drawn from the strategies (about 10 ms each); mutated too
    big_arrays: int = 40  # 100,000-element arrays (each 0.2 to 0.6 MB)
    unchanged_share: float = 0.1  # bodies sent as they are, to see the worker still applies


FULL = FuzzConfig(100_000)
QUICK = FuzzConfig(4_000, hypothesis=300, big_arrays=10)


@dataclass(frozen=True)
class Sent:
    topic: str
    kind: str  # hypothesis, valid, or the mutation's name
    value: bytes
    key: bytes | None
    headers: list[tuple[str, str | bytes | None]]


def make_bodies(config: FuzzConfig, run_tag: str, seed: int) -> list[Sent]:
    rng = random.Random(seed)
    generator = Generator(run_tag, 200, seed=seed)
    real = originals(generator, 300, now_ms() - 60_000)
    out: list[Sent] = []
    drawn = hypothesis_bodies(config.hypothesis, seed)
    out += [Sent(topic, "hypothesis", value, None, []) for topic, value in drawn]
    # The drawn bodies are mutated too, so that broken bytes meet odd shapes.
    real += [Body(topic, b"", value, [], "", "") for topic, value in drawn
             if value.startswith(b"{") and len(value) > 2]
    names = sorted(MUTATIONS)
    for n in range(config.big_arrays):
        body = rng.choice(real)
        if n % 2:
            out.append(Sent(body.topic, BIG, big_array(body.value, rng), body.key, []))
        else:
            out.append(Sent(body.topic, "800kB_invalid", big_invalid(body.value, rng),
                            body.key, []))
    while len(out) < config.bodies:
        body = rng.choice(real)
        if rng.random() < config.unchanged_share:
            out.append(Sent(body.topic, "unchanged", body.value, body.key, []))
            continue
        name = rng.choice(names)
        out.append(Sent(body.topic, name, MUTATIONS[name](body.value, rng), body.key, []))
    rng.shuffle(out)
    return [_with_delivery_id(sent, run_tag, n, rng) for n, sent in enumerate(out)]


def _with_delivery_id(sent: Sent, run_tag: str, n: int, rng: random.Random) -> Sent:
    """A Jira record gets a unique delivery id (now and then a junk header too); Trello
    records have none (their action id is the event id)."""
    if sent.topic != "jira.events":
        return sent
    delivery = f"fuzz-{run_tag}-{n}".encode()
    headers: list[tuple[str, str | bytes | None]] = [("X-Atlassian-Webhook-Identifier",
                                                      delivery)]
    if rng.random() < 0.02:
        headers.append(("x-jira-site", rng.choice((b"\xff\xfe", b"", b"a" * 300,
                                                   b"fuzz.atlassian.net"))))
    return Sent(sent.topic, sent.kind, sent.value, sent.key, headers)


def publish(settings: Settings, bodies: list[Sent]) -> tuple[int, int, dict[str, str]]:
    """Publish everything as fast as the broker takes it: (acked, failed, errors seen)."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 2,
                         "enable.idempotence": True, "linger.ms": 20,
                         "compression.type": "lz4", "message.max.bytes": 1_000_000,
                         "queue.buffering.max.messages": 500_000})
    names = {t: by_name(t).full_name(settings.topic_prefix) for t in ("jira.events",
                                                                      "trello.events")}
    counts = {"acked": 0, "failed": 0}
    errors: dict[str, str] = {}

    def delivered(error: Any, _message: Any) -> None:
        counts["failed" if error else "acked"] += 1
        if error:
            errors[str(error.name())] = str(error)

    for sent in bodies:
        while True:
            try:
                producer.produce(names[sent.topic], sent.value, sent.key,
                                 headers=sent.headers or None, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(120)
    return counts["acked"], counts["failed"], errors


def wait_through(worker: Worker, settings: Settings, timeout: float) -> tuple[float, int]:
    started = time.monotonic()
    lag = -1
    while time.monotonic() - started < timeout:
        lag = pipeline_lag(settings, exact=True)
        windows = -1.0
        if lag == 0:
            try:
                windows = worker.metrics().total("boxsync_open_windows")
            except RuntimeError:
                windows = -1.0
            if windows == 0:
                break
        time.sleep(1)
    return time.monotonic() - started, lag


def run(stack: ChaosStack, report: Report, config: FuzzConfig, seed: int) -> None:
    run_tag = run_id()
    settings = stack.prepare(f"chaos{run_tag}-fuzz.")
    made = time.monotonic()
    bodies = make_bodies(config, run_tag, seed)
    made = time.monotonic() - made
    worker = Worker(stack, settings, f"fuzz-{run_tag}")
    try:
        worker.start()
        stages_before = {name: proc.pid for name, proc in worker.stages().items()}
        memory_before = worker.memory()
        print(f"  fuzz: {len(bodies):,} bodies made in {made:.0f} s; publishing", flush=True)
        acked, failed, errors = publish(settings, bodies)
        waited, lag = wait_through(worker, settings, 300 if config.bodies > 20_000 else 150)
        _verdicts(report, settings, worker, config, bodies, acked, failed, errors, waited, lag,
                  stages_before, memory_before)
    finally:
        worker.stop()
        delete_topics(settings)


def _verdicts(report: Report, settings: Settings, worker: Worker, config: FuzzConfig,
              bodies: list[Sent], acked: int, failed: int, errors: dict[str, str],
              waited: float, lag: int, stages_before: dict[str, int],
              memory_before: dict[str, tuple[int, int]]) -> None:
    kinds = Counter(sent.kind for sent in bodies)
    report.check(PART, f"published {len(bodies):,} bodies ({len(kinds)} kinds, see notes)",
                 f"{len(bodies):,} acked", f"{acked:,} acked, {failed} refused by the broker"
                 + (f" {sorted(errors)}" if errors else ""), acked == len(bodies))
    report.note(PART, "bodies: " + ", ".join(f"{kind} {count:,}"
                                             for kind, count in sorted(kinds.items())))
    metrics = worker.metrics()
    crashes = metrics.total("boxsync_stage_errors_total")
    stages_after = {name: proc.pid for name, proc in worker.stages().items()}
    restarted = sorted(name for name, pid in stages_before.items()
                       if stages_after.get(name) != pid)
    report.check(PART, "crashes: stage errors, stage processes restarted, worker exits",
                 "0, none, alive", f"{crashes:.0f}, {restarted or 'none'}, "
                 f"{'alive' if worker.alive() else 'exited'}",
                 crashes == 0 and not restarted and worker.alive())
    changes = json_values(read_topic(settings, "sync.changes"))
    references = json_values(read_topic(settings, "sync.reference"))
    letters = json_values(read_topic(settings, "sync.deadletter"))
    raw_names = {by_name(t).full_name(settings.topic_prefix) for t in ("jira.events",
                                                                       "trello.events")}
    origins = {(o["topic"], o["partition"], o["offset"])
               for o in (m["origin"] for m in (*changes, *references))}
    ingest_letters = [m for m in letters if m.get("source_topic") in raw_names]
    dead = {(m["source_topic"], m["partition"], m["offset"]) for m in ingest_letters}
    passed = metrics.by("boxsync_events_passed_over_total", "reason")
    passed_total = int(sum(passed.values()))
    both = len(origins & dead)
    accounted = len(origins) + len(dead) + passed_total
    report.check(PART, "every record applied, passed over with a reason, or dead-lettered",
                 f"{acked:,} = changes + references + dead letters + passed over, none twice",
                 f"{len(origins):,} + {len(dead):,} + {passed_total:,} = {accounted:,}"
                 f" ({both} twice; through in {waited:.0f} s, lag {lag})",
                 accounted == acked and both == 0 and lag == 0)
    reasons = Counter(str(m.get("error", {}).get("type") or "") for m in ingest_letters)
    report.check(PART, "dead letters by reason", "each with a reason",
                 ", ".join(f"{r or 'NONE'} {c:,}" for r, c in reasons.most_common()) or "none",
                 "" not in reasons)
    report.check(PART, "passed over by reason", "each with a reason",
                 ", ".join(f"{r or 'NONE'} {int(c):,}" for r, c in sorted(passed.items()))
                 or "none", "" not in passed)
    _applied(report, settings, metrics, changes, letters, raw_names)
    after = worker.memory()
    grown = {name: (after[name][0] - rss) / 2**20 for name, (rss, _) in memory_before.items()
             if name in after}
    report.figure(PART, "RSS growth over the part (MiB)", ", ".join(
        f"{name} {mib:+.0f}" for name, mib in sorted(grown.items())))
    status, _ = worker.http("/readyz")
    report.check(PART, "worker ready at the end", "200", status, status == 200)


def _applied(report: Report, settings: Settings, metrics: Any, changes: list[dict[str, Any]],
             letters: list[dict[str, Any]], raw_names: set[str]) -> None:
    """Every change ingest made is in an update on task.updates, or counted (a duplicate
    delivery, a change to a deleted task); none is undecodable for the collapse."""
    updates = json_values(read_topic(settings, "task.updates"))
    in_updates = {event_id for update in updates for event_id in update.get("event_ids", ())}
    ids = Counter(change["event_id"] for change in changes)
    missing = [event_id for event_id in ids if event_id not in in_updates]
    duplicates = sum(count - 1 for count in ids.values())
    closed = metrics.by("boxsync_changes_closed_total", "outcome")
    dropped = int(closed.get("dropped", 0) + closed.get("filtered", 0))
    counted_dup = int(metrics.total("boxsync_events_duplicate_total"))
    report.check(PART, f"changes in an update on task.updates ({len(ids):,} event ids)",
                 "all, or counted (duplicate, dropped)",
                 f"{len(ids) - len(missing):,} in updates; {len(missing):,} not, of which "
                 f"{dropped:,} counted dropped; {duplicates:,} repeated ids, {counted_dup:,} "
                 "counted duplicate", len(missing) <= dropped and duplicates <= counted_dup)
    internal = [m for m in letters if m.get("source_topic") not in raw_names]
    report.check(PART, "changes the collapse could not decode", "0",
                 len(internal), not internal)
