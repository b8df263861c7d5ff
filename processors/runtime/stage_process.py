"""Each hot-path stage in a child process of the worker, supervised by it.

Why processes: the stages are CPU-bound Python, and in threads of one process they share one
interpreter lock; in processes, ingest and collapse run on two cores at once.

The child runs the stage's transactional loop and, every second, sends the parent a snapshot of
its metrics and its health (partitions assigned, last loop beat). The parent serves the merged
metrics at /metrics and the health at /readyz, restarts a child that died, and stops the
children with the worker. A child dies with its parent (PR_SET_PDEATHSIG), so a kill -9 of the
worker leaves no orphan consuming behind a restarted one.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import logging
import logging.config
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier as BarrierType
from multiprocessing.synchronize import Event as EventType

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from processors.logs import event, logging_config
from processors.metrics import Metrics
from processors.runtime.loop import HUNG_MARGIN_SECONDS, TransactionalLoop
from processors.settings import Settings

log = logging.getLogger("boxsync.stages")
REPORT_SECONDS = 1.0
RESTART_BACKOFF_SECONDS = 2.0
# How long the processes of one stage wait for each other before they join the consumer
# group anyway (a sibling that cannot start must not hold the others back for long).
START_GATE_SECONDS = 30.0
# The exit code of a stage process that ended itself on a hung Kafka call (see hung_call).
HUNG_EXIT_CODE = 75
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_M_ARENA_MAX = -8  # mallopt's parameter number (glibc malloc.h)
MALLOC_ARENAS = 2
TRIM_SECONDS = 5.0


@dataclass(frozen=True)
class StageReport:
    stage: str
    metrics: list[Metric]
    assigned: bool
    last_beat: float


@dataclass
class StageProcess:
    """The parent's handle on one stage's child process."""

    stage: str
    settings: Settings
    database_url: str
    reports: multiprocessing.Queue[StageReport]
    # Shared by the processes of one stage at the worker's start (see run_child); a restarted
    # process joins its running siblings' group at once.
    start_gate: BarrierType | None = None
    process: multiprocessing.process.BaseProcess | None = None
    stop_event: EventType | None = None
    last_report: StageReport | None = None
    started_at: float = 0.0
    restarts: int = 0

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.stop_event = context.Event()
        self.process = context.Process(
            target=run_child, name=f"boxsync-{self.stage}", daemon=True,
            args=(self.stage, self.settings, self.database_url, self.stop_event, self.reports,
                  self.start_gate))
        self.process.start()
        self.started_at = time.time()
        self.start_gate = None

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def signal_stop(self) -> None:
        if self.stop_event is not None:
            self.stop_event.set()

    def join(self, timeout: float = 20) -> None:
        """Wait for the process to end after signal_stop; kill it past the timeout."""
        if self.process is not None:
            self.process.join(timeout)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(5)


@dataclass
class StageSupervisor:
    """Starts the stage children, collects their reports, restarts the ones that die."""

    settings: Settings
    database_url: str
    stages: tuple[str, ...] = ("ingest", "collapse")
    children: dict[str, StageProcess] = field(default_factory=dict)
    # Told the stage (`ingest`, not `ingest.2`) of each process started again.
    on_restart: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self._reports: multiprocessing.Queue[StageReport] = \
            multiprocessing.get_context("spawn").Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._gates: list[BarrierType] = []

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        siblings: dict[str, list[str]] = {}
        for stage in self.stages:
            siblings.setdefault(stage.split(".")[0], []).append(stage)
        gates = {name: context.Barrier(len(group)) for name, group in siblings.items()
                 if len(group) > 1}
        self._gates = list(gates.values())
        for stage in self.stages:
            child = StageProcess(stage, self.settings, self.database_url, self._reports,
                                 gates.get(stage.split(".")[0]))
            child.start()
            self.children[stage] = child
        self._thread = threading.Thread(target=self._watch, name="boxsync-supervisor",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        for gate in self._gates:  # a process still waiting for its siblings stops at once
            gate.abort()
        # All at once: each child finishes its batch and commits in parallel with the others.
        for child in self.children.values():
            child.signal_stop()
        for child in self.children.values():
            child.join()
        if self._thread is not None:
            self._thread.join(5)

    def problems(self, now: float, beat_limit: float) -> list[str]:
        if not self.children:
            return ["stage processes not started yet"]
        found = []
        for stage, child in self.children.items():
            report = child.last_report
            if not child.alive():
                found.append(f"{stage}: process not running (restarted {child.restarts} times)")
            elif report is None or not report.assigned:
                found.append(f"{stage}: waiting for partitions")
            elif now - report.last_beat > beat_limit:
                found.append(f"{stage}: no progress for {now - report.last_beat:.0f}s")
        return found

    def metric_snapshots(self) -> list[list[Metric]]:
        return [child.last_report.metrics for child in self.children.values()
                if child.last_report is not None]

    def _watch(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(queue.Empty):
                report = self._reports.get(timeout=REPORT_SECONDS)
                self.children[report.stage].last_report = report
            self._restart_dead()

    def _restart_dead(self) -> None:
        for stage, child in self.children.items():
            if self._stopping.is_set() or child.alive():
                continue
            if time.time() - child.started_at < RESTART_BACKOFF_SECONDS:
                continue
            code = child.process.exitcode if child.process else None
            event(log, logging.ERROR, "stage process died; restarting it", stage=stage,
                  exit_code=code)
            child.restarts += 1
            if self.on_restart is not None:
                self.on_restart(stage.split(".")[0])
            child.start()


class MergedMetrics:
    """A prometheus collector: the worker's own metrics plus the children's, summed per
    sample (counters and histograms add up across processes; each gauge is one stage's)."""

    def __init__(self, own: CollectorRegistry, supervisor: StageSupervisor) -> None:
        self._own = own
        self._supervisor = supervisor

    def collect(self) -> Iterable[Metric]:
        first_seen: dict[str, Metric] = {}
        sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for snapshot in (list(self._own.collect()), *self._supervisor.metric_snapshots()):
            for family in snapshot:
                first_seen.setdefault(family.name, family)
                values = sums.setdefault(family.name, {})
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    values[key] = values.get(key, 0.0) + sample.value
        merged = []
        for name, family in first_seen.items():
            total = Metric(name, family.documentation, family.type, family.unit)
            for (sample_name, labels), value in sums[name].items():
                total.add_sample(sample_name, dict(labels), value)
            merged.append(total)
        return merged


def run_child(stage: str, settings: Settings, database_url: str, stop: EventType,
              reports: multiprocessing.Queue[StageReport],
              start_gate: BarrierType | None = None) -> None:
    """The child process: run one stage's loop until `stop`, reporting every second.

    With a `start_gate`, the stage's processes join their consumer group together, once each
    has loaded what it needs: otherwise the first to start takes every partition, works
    alone until the others join, then stops for a rebalance (measured in `make bench`: one
    ingest process alone for 1.5 s, then a 1 s pause)."""
    _die_with_parent()
    _name_process(f"bs-{stage}")
    libc = _libc()
    _bound_malloc_arenas(libc)
    logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and tells us
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Imported after the logging set-up: the stage's module logs as it loads.
    from processors.runtime.stage_loop import build_loop

    metrics = Metrics.create()
    loop = build_loop(stage, settings, metrics, database_url)
    if start_gate is not None and isinstance(loop, TransactionalLoop):
        loop.gate = functools.partial(_wait_for_siblings, start_gate, stage)
    _tune_garbage_collector()
    local_stop = threading.Event()

    def report() -> None:
        trimmed = time.monotonic()
        while not local_stop.wait(REPORT_SECONDS):
            if stop.is_set():
                local_stop.set()
            if libc is not None and time.monotonic() - trimmed >= TRIM_SECONDS:
                libc.malloc_trim(0)  # see _bound_malloc_arenas
                trimmed = time.monotonic()
            if hung_call(loop):
                event(log, logging.ERROR, "a Kafka transactional call hung past its timeout; "
                      "ending the stage process so that the worker starts it again",
                      stage=stage, seconds_past_timeout=round(hung_call(loop), 1))
                logging.shutdown()
                os._exit(HUNG_EXIT_CODE)
            with contextlib.suppress(Exception):
                reports.put_nowait(StageReport(stage, list(metrics.registry.collect()),
                                               loop.assigned_once, loop.last_beat))

    reporter = threading.Thread(target=report, name="boxsync-report", daemon=True)
    reporter.start()
    event(log, logging.INFO, "stage process started", stage=stage, pid=os.getpid())
    loop.run(local_stop)
    reporter.join(REPORT_SECONDS * 2)


def hung_call(loop: object, margin: float = HUNG_MARGIN_SECONDS) -> float:
    """How long the loop's transactional call has run past its timeout, when more than
    `margin`; else 0."""
    hung_for = getattr(loop, "hung_for", None)
    seconds = float(hung_for()) if hung_for is not None else 0.0
    return seconds if seconds > margin else 0.0


def _wait_for_siblings(gate: BarrierType, stage: str) -> None:
    try:
        gate.wait(START_GATE_SECONDS)
    except threading.BrokenBarrierError:
        event(log, logging.WARNING, "joining the consumer group without waiting for the "
              "stage's other processes", stage=stage, waited_seconds=START_GATE_SECONDS)


def _tune_garbage_collector() -> None:
    """The hot path's objects (changes, windows, JSON dicts) die by reference counting and
    form no cycles; with the default thresholds the cycle collector keeps rescanning tens of
    thousands of open windows, which cost about a quarter of the collapse's time (measured:
    18.3 → 14.0 µs per event at 20,000 open tasks). Freeze what start-up made, collect
    rarely: a young collection per 200,000 allocations, not 50,000 (measured on the bench's
    200,000 changes, collapse alone without I/O: 19.8 µs per event at 50,000, 17.1 at
    200,000, 16.7 with no collection at all)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 50, 1000)


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # not glibc: nothing to tune
        return None


def _bound_malloc_arenas(libc: ctypes.CDLL | None) -> None:
    """glibc gives each thread that allocates its own malloc arena, up to 8 per core, and
    librdkafka runs a thread per broker plus its own; each arena keeps the pages its thread
    freed. Two arenas, and a `malloc_trim` every few seconds (the report thread) that hands
    the free pages back, keep a stage process near what it holds. Measured in `make bench`
    (README, Memory)."""
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS)


def _name_process(name: str) -> None:
    """Show the stage in `ps -o comm`, `top` and psutil (Linux keeps 15 bytes)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent already died before prctl took effect
        os._exit(1)
