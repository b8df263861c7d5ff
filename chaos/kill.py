"""Part `kill`: a load with an oracle through a worker that is killed, a broker restart and a
stopped PostgreSQL; at the end every change must be in exactly one update, no update twice,
the app cache equal to the oracle, and nothing left pending.

The counters on /metrics restart from zero with every killed process, so this part accounts
from the topics (task.updates, sync.deadletter) and the app cache, and reads /metrics only for
what is current (open windows) and for the stage restarts of the last worker process.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition

from chaos.bodies import Generator, now_ms
from chaos.publisher import Publisher
from chaos.report import Report
from chaos.stack import ChaosStack, Worker, cached_tasks, run_id
from chaos.topics import count_topic, delete_topics, json_values, pipeline_lag, read_topic
from processors.settings import Settings
from schemas.topics import by_name

PART = "kill"


@dataclass(frozen=True)
class KillConfig:
    events: int
    tasks: int
    duration: float  # seconds over which the load is published
    kills: int
    postgres_down: float
    broker_down: float = 10.0


FULL = KillConfig(200_000, 5_000, 200.0, 20, 30.0)
QUICK = KillConfig(8_000, 500, 30.0, 3, 10.0)


class UpdatesWatcher:
    """Reads task.updates (read_committed) from its start while the part runs, to know when
    every change is through."""

    def __init__(self, settings: Settings) -> None:
        self.event_ids: set[str] = set()
        self.updates = 0
        self._stop = threading.Event()
        self._topic = by_name("task.updates").full_name(settings.topic_prefix)
        self._consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 2,
                                   "group.id": f"chaos-watch-{uuid.uuid4().hex}",
                                   "enable.auto.commit": False,
                                   "isolation.level": "read_committed"})
        partitions = self._consumer.list_topics(self._topic, timeout=10).topics[self._topic]
        self._consumer.assign([TopicPartition(self._topic, p, -2)
                               for p in partitions.partitions])
        self._thread = threading.Thread(target=self._run, name="chaos-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(5000, 0.5):
                if message.error() is None and message.value():
                    update = orjson.loads(message.value() or b"{}")
                    self.event_ids.update(update.get("event_ids") or ())
                    self.updates += 1
        self._consumer.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


@dataclass
class Chaos:
    """What the chaos controller did, for the table."""

    main_kills: list[float] = field(default_factory=list)  # restart-to-ready seconds
    stage_kills: list[tuple[str, float]] = field(default_factory=list)  # name, back after s
    stage_not_back: list[str] = field(default_factory=list)
    broker_ready_after: float | None = None
    postgres_probes: list[tuple[float, int, bytes]] = field(default_factory=list)
    postgres_ready_after: float | None = None
    postgres_same_pid: bool = False
    errors: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # what was done when (s from the start)


def plan(config: KillConfig, rng: random.Random) -> list[tuple[float, str]]:
    """When to do what, in seconds from the start of the load: kills at random moments
    outside the broker's and the database's outages, which come at 35 % and 65 %."""
    duration = config.duration
    broker_at, postgres_at = 0.35 * duration, 0.65 * duration
    busy = [(broker_at - 3, broker_at + config.broker_down + 20),
            (postgres_at - 3, postgres_at + config.postgres_down + 15)]
    main = max(1, round(config.kills * 0.35))
    kinds = ["kill_main"] * main + ["kill_stage"] * (config.kills - main)
    rng.shuffle(kinds)
    moments: list[float] = []
    while len(moments) < config.kills:
        moment = rng.uniform(0.05 * duration, 0.95 * duration)
        if not any(start <= moment <= end for start, end in busy):
            moments.append(moment)
    actions = list(zip(sorted(moments), kinds, strict=True))
    actions += [(broker_at, "broker"), (postgres_at, "postgres")]
    return sorted(actions)


def _kill_stage(worker: Worker, rng: random.Random, done: Chaos) -> None:
    stages = worker.stages()
    hot = [name for name in stages if name.startswith(("bs-ingest", "bs-collapse"))]
    names = hot if hot and rng.random() < 0.85 else list(stages)
    if not names:
        done.errors.append("no stage process to kill")
        return
    name = rng.choice(sorted(names))
    victim = stages[name].pid
    os.kill(victim, signal.SIGKILL)
    started = time.monotonic()
    while time.monotonic() - started < 30:
        current = worker.stages().get(name)
        if current is not None and current.pid != victim:
            done.stage_kills.append((name, time.monotonic() - started))
            return
        time.sleep(0.2)
    done.stage_not_back.append(name)


def _postgres_outage(stack: ChaosStack, worker: Worker, seconds: float, done: Chaos) -> None:
    pid = worker.pid
    stack.stop_postgres()
    stopped = time.monotonic()
    while time.monotonic() - stopped < seconds:
        status, body = worker.http("/readyz")
        done.postgres_probes.append((time.monotonic() - stopped, status, body))
        time.sleep(0.5)
    stack.start_postgres()
    done.postgres_ready_after = worker.wait_ready(120)
    done.postgres_same_pid = worker.alive() and worker.pid == pid


def control(stack: ChaosStack, worker: Worker, config: KillConfig, actions: list[tuple[float,
            str]], rng: random.Random, started: float) -> Chaos:
    done = Chaos()
    for due, action in actions:
        time.sleep(max(0.0, started + due - time.monotonic()))
        done.log.append(f"{time.monotonic() - started:.0f}s {action}")
        try:
            if action == "kill_main":
                worker.kill9()
                done.main_kills.append(worker.start())
            elif action == "kill_stage":
                _kill_stage(worker, rng, done)
            elif action == "broker":
                stack.stop_broker()
                time.sleep(config.broker_down)
                stack.start_broker()
                done.broker_ready_after = worker.wait_ready(180)
            else:
                _postgres_outage(stack, worker, config.postgres_down, done)
        except Exception as exc:  # recorded as a FAIL, and the battery goes on
            done.errors.append(f"{action}: {type(exc).__name__}: {exc}")
            if not worker.alive():
                with contextlib.suppress(Exception):
                    worker.start()
    return done


def wait_drained(worker: Worker, settings: Settings, watcher: UpdatesWatcher,
                 expected: set[str], timeout: float, quiet: float = 30.0
                 ) -> tuple[float, float, int]:
    """Until every change is on task.updates, or nothing more has come for `quiet` seconds
    with no window open and no lag (what is missing then stays missing), or the timeout;
    returns (seconds waited, open windows, lag)."""
    started = last_progress = time.monotonic()
    seen = -1
    open_windows, lag = float("nan"), -1
    while True:
        now = time.monotonic()
        if len(watcher.event_ids) != seen:
            seen, last_progress = len(watcher.event_ids), now
        through = expected <= watcher.event_ids
        if through or now - last_progress > quiet or now - started > timeout:
            with contextlib.suppress(Exception):
                open_windows = worker.metrics().total("boxsync_open_windows")
            lag = pipeline_lag(settings, exact=True)
            if (open_windows == 0 and lag == 0) or now - started > timeout:
                break
        time.sleep(1)
    return time.monotonic() - started, open_windows, lag


def run(stack: ChaosStack, report: Report, config: KillConfig, seed: int,
        keep_topics: bool = False) -> None:
    run_tag = run_id()
    settings = stack.prepare(f"chaos{run_tag}-kill.")
    rng = random.Random(seed)
    generator = Generator(run_tag, config.tasks, seed=seed)
    schedule = generator.schedule(config.events, now_ms() + 2000, config.events / config.duration)
    expected = {body.event_id for _, body in schedule}
    worker = Worker(stack, settings, f"kill-{run_tag}")
    stop = threading.Event()
    watcher: UpdatesWatcher | None = None
    try:
        first_ready = worker.start()
        watcher = UpdatesWatcher(settings)
        publisher = Publisher(settings)
        print(f"  kill: worker ready in {first_ready:.1f} s; publishing {config.events:,} "
              f"bodies over {config.duration:.0f} s with {config.kills} kills, a broker "
              f"restart and {config.postgres_down:.0f} s without PostgreSQL", flush=True)
        started = time.monotonic()
        thread = publisher.run(schedule, stop)
        done = control(stack, worker, config, plan(config, rng), rng, started)
        thread.join(config.duration + 600)
        print(f"  kill: load and chaos done after {time.monotonic() - started:.0f} s; "
              "draining", flush=True)
        waited, open_windows, lag = wait_drained(worker, settings, watcher, expected,
                                                 timeout=300 if config.events > 50_000
                                                 else 150)
        _verdicts(report, stack, settings, worker, config, generator, publisher, done,
                  expected, waited, open_windows, lag)
        report.note(PART, "actions: " + ", ".join(done.log))
    finally:
        stop.set()
        if watcher is not None:
            watcher.close()
        worker.stop()
        if keep_topics:
            report.note(PART, f"topics kept: {settings.topic_prefix}*")
        else:
            delete_topics(settings)


def _verdicts(report: Report, stack: ChaosStack, settings: Settings, worker: Worker,
              config: KillConfig, generator: Generator, publisher: Publisher, done: Chaos,
              expected: set[str], waited: float, open_windows: float, lag: int) -> None:
    jira = sum(1 for task in generator.oracle.last if task.startswith("jira:"))
    report.check(PART, f"published {config.events:,} bodies over {len(generator.oracle.last):,} "
                 f"tasks ({jira:,} Jira, {len(generator.oracle.last) - jira:,} Trello) in "
                 f"{config.duration:.0f} s", f"{config.events:,} acked",
                 f"{publisher.acked:,} acked, {publisher.failed} failed, at worst "
                 f"{publisher.late_seconds:.1f} s behind"
                 + (f", {publisher.resent:,} sent again after a stall" if publisher.resent
                    else ""), publisher.acked == config.events)
    mains = done.main_kills
    main_planned = max(1, round(config.kills * 0.35))
    report.check(PART, f"kill -9 of the main worker process x{main_planned}, restarted",
                 f"{main_planned} restarts, each ready",
                 f"{len(mains)} ready" + (f" in {min(mains):.1f}-{max(mains):.1f} s"
                                          if mains else ""), len(mains) == main_planned)
    back = [seconds for _, seconds in done.stage_kills]
    names = Counter(name for name, _ in done.stage_kills)
    report.check(PART, f"kill -9 of single stage processes x{config.kills - main_planned}",
                 "each restarted by the worker",
                 f"{len(back)} back" + (f" in {min(back):.1f}-{max(back):.1f} s "
                                        f"({', '.join(f'{n} x{c}' for n, c in names.items())})"
                                        if back else "")
                 + (f"; not back: {done.stage_not_back}" if done.stage_not_back else ""),
                 len(back) == config.kills - main_planned)
    report.check(PART, f"broker restart (stop, {config.broker_down:.0f} s, start)",
                 "worker ready again by itself",
                 "never" if done.broker_ready_after is None
                 else f"ready {done.broker_ready_after:.1f} s after the broker was back",
                 done.broker_ready_after is not None)
    down = [(at, status, body) for at, status, body in done.postgres_probes if at >= 2.0]
    refused = [status for _, status, body in down if status == 503 and b"postgres" in body]
    report.check(PART, f"PostgreSQL stopped {config.postgres_down:.0f} s: /readyz while down",
                 "503 naming postgres (after 2 s)", f"{len(refused)} of {len(down)} probes",
                 bool(down) and len(refused) == len(down))
    report.check(PART, "... worker keeps its place and resumes by itself",
                 "same process, ready again",
                 "never" if done.postgres_ready_after is None else
                 f"{'same' if done.postgres_same_pid else 'another'} process, ready "
                 f"{done.postgres_ready_after:.1f} s after PostgreSQL was back",
                 done.postgres_same_pid and done.postgres_ready_after is not None)
    for error in done.errors:
        report.note(PART, f"controller: {error}")
    report.check(PART, "chaos actions without error", "0 errors", len(done.errors),
                 not done.errors)
    updates = json_values(read_topic(settings, "task.updates"))
    ids = Counter(update["update_id"] for update in updates)
    applied: Counter[str] = Counter()
    for update in updates:
        applied.update(update.get("event_ids") or ())
    missing = expected - set(applied)
    dead = count_topic(settings, "sync.deadletter")
    report.check(PART, "changes applied (event ids on task.updates)",
                 f"{len(expected):,}", f"{len(expected) - len(missing):,} (missing "
                 f"{len(missing):,}; drained in {waited:.0f} s)", not missing)
    report.check(PART, "filtered or dead-lettered (filters off: none expected)", "0",
                 f"{dead} dead letters", dead == 0)
    duplicated = sum(1 for count in ids.values() if count > 1)
    report.check(PART, f"duplicate update_ids in {len(updates):,} updates (whole topic, "
                 "read_committed)", "0", duplicated, duplicated == 0)
    twice = sum(1 for count in applied.values() if count > 1)
    report.check(PART, "changes in more than one update", "0", twice, twice == 0)
    if missing:
        report.note(PART, f"missing event ids, e.g. {sorted(missing)[:5]}")
    _compare_cache(report, stack, settings, generator)
    restarts = -1.0
    with contextlib.suppress(Exception):
        restarts = worker.metrics().total("boxsync_stage_errors_total")
    report.figure(PART, "stage errors of the last worker process (its stages restarted)",
                  f"{restarts:.0f}")
    report.check(PART, "nothing pending at the end", "open windows 0, lag 0",
                 f"open windows {open_windows:.0f}, lag {lag}", open_windows == 0 and lag == 0)


def _compare_cache(report: Report, stack: ChaosStack, settings: Settings,
                   generator: Generator) -> None:
    oracle = generator.oracle
    cached = cached_tasks(stack.database_url(), settings.topic_prefix, oracle.last)
    wrong: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
    for task_id in oracle.last:
        want = oracle.expected(task_id)
        row = cached.get(task_id)
        got = None if row is None else {name: row[0].get(name) for name in want}
        if got != want:
            wrong.append((task_id, want, None if row is None else row[0]))
    report.check(PART, f"app cache (tasks) equals the oracle, {len(oracle.last):,} tasks",
                 "0 differ", f"{len(wrong)} differ ({sum(1 for w in wrong if w[2] is None)} "
                 "missing)", not wrong)
    for task_id, want, got in wrong[:3]:
        differing = {k: (v, None if got is None else got.get(k)) for k, v in want.items()
                     if got is None or got.get(k) != v}
        report.note(PART, f"{task_id}: (oracle, cache) {differing}")
