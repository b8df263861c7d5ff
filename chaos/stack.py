"""The battery's own stack and the tools every part uses on it.

The stack is the project's own (`boxsync stack up|down`, `boxsync topics create`, `boxsync db
migrate`, run as commands) under BOXSYNC_LOCAL_DIR=.local/chaos with Kafka on 127.0.0.1:19092
(controller 19093): the battery stops and starts that broker and that PostgreSQL, with the
stack's own per-service stop and start (processors.stack.kafka / postgres `down` and `up`),
and nothing else. `down` at the end stops only what this run started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

from processors.settings import Settings, load_settings
from processors.stack import kafka as stack_kafka
from processors.stack import postgres as stack_postgres
from processors.stack.services import stack_lock
from processors.store import db
from processors.store.tenancy import schema_for_prefix
from tests.support.kafka import daytime_zone, free_port

ROOT = Path(__file__).resolve().parents[1]
LOCAL_DIR = ROOT / ".local" / "chaos"
BOOTSTRAP = "127.0.0.1:19092"
CONTROLLER_PORT = "19093"
FIELD_MAP = "customfield_10015=start_date,customfield_10016=story_points"


def clean_environ() -> dict[str, str]:
    """This process's environment without any BOXSYNC_ variable: the battery names its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BOXSYNC_")}


@dataclass
class ChaosStack:
    """The chaos stack: its environment, its CLI, and its services' stop and start."""

    log_dir: Path = field(default_factory=lambda: LOCAL_DIR / "logs")
    started: tuple[str, ...] = ()  # the services this run started (and so stops)

    @property
    def env(self) -> dict[str, str]:
        return {**clean_environ(), "BOXSYNC_LOCAL_DIR": str(LOCAL_DIR),
                "BOXSYNC_KAFKA_BOOTSTRAP": BOOTSTRAP,
                "BOXSYNC_KAFKA_CONTROLLER_PORT": CONTROLLER_PORT}

    def settings(self, prefix: str = "", **extra: Any) -> Settings:
        # Settings also read os.environ: __main__ removes the BOXSYNC_ variables first.
        return load_settings(kafka_bootstrap=BOOTSTRAP, kafka_controller_port=int(CONTROLLER_PORT),
                             local_dir=LOCAL_DIR, topic_prefix=prefix, **extra)

    def cli(self, *args: str, prefix: str = "", timeout: float = 300) -> str:
        """`boxsync ARGS` with the chaos environment (and a topic prefix); its output."""
        env = {**self.env, "BOXSYNC_TOPIC_PREFIX": prefix}
        result = subprocess.run([sys.executable, "-m", "processors.cli.main", *args], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=timeout,
                                check=False)
        if result.returncode != 0:
            raise RuntimeError(f"boxsync {' '.join(args)} failed ({result.returncode}): "
                               f"{(result.stderr or result.stdout).strip()[-800:]}")
        return result.stdout

    def states(self) -> dict[str, str]:
        """`boxsync stack status`: service name → running / stopped / external."""
        lines = self.cli("stack", "status").splitlines()
        return {parts[0]: parts[1] for parts in (line.split() for line in lines)
                if len(parts) > 1}

    def up(self) -> None:
        self.started = tuple(name for name, state in self.states().items()
                             if state == "stopped")
        print(self.cli("stack", "up").rstrip())
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def down(self) -> None:
        """Stop what this run started: all of it with `boxsync stack down`, else only the
        service it started (the stack's own per-service stop)."""
        if set(self.started) >= {"kafka", "postgres"}:
            print(self.cli("stack", "down").rstrip())
        elif "kafka" in self.started:
            self.stop_broker()
        elif "postgres" in self.started:
            self.stop_postgres()
        if set(self.started) != {"kafka", "postgres"}:
            print(f"chaos stack: left running what was running before ({self.started} "
                  "were started here)")

    def prepare(self, prefix: str) -> Settings:
        """Topics and migrations for one part's tenant, through the CLI."""
        self.cli("topics", "create", prefix=prefix)
        self.cli("db", "migrate", prefix=prefix)
        return self.settings(prefix)

    # --- the services, one at a time ------------------------------------------------------

    def stop_broker(self) -> None:
        with stack_lock(self.settings()):
            stack_kafka.down(self.settings(), lambda _: None)

    def start_broker(self) -> None:
        with stack_lock(self.settings()):
            stack_kafka.up(self.settings(), lambda _: None)

    def stop_postgres(self) -> None:
        with stack_lock(self.settings()):
            stack_postgres.down(self.settings(), lambda _: None)

    def start_postgres(self) -> None:
        with stack_lock(self.settings()):
            stack_postgres.up(self.settings(), lambda _: None)

    def database_url(self) -> str:
        return stack_postgres.resolve_database_url(self.settings())

    def broker_pid(self) -> int | None:
        return stack_kafka.status(self.settings()).pid


def run_id() -> str:
    return uuid.uuid4().hex[:6]


# --- the worker ---------------------------------------------------------------------------


class Worker:
    """`boxsync worker` as a subprocess (as tests/support/kafka.py WorkerProcess runs it),
    restartable with the same environment, with its stage processes at hand."""

    def __init__(self, stack: ChaosStack, settings: Settings, name: str, **extra: str) -> None:
        self.name = name
        self.log_path = stack.log_dir / f"worker-{name}.log"
        self.cwd = LOCAL_DIR / "run"  # faust's data directory goes there, not into the checkout
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = {**stack.env,
                    "BOXSYNC_TOPIC_PREFIX": settings.topic_prefix,
                    "BOXSYNC_WEB_PORT": str(self.port),
                    "BOXSYNC_INSTANCE_ID": f"chaos-{name}",
                    "BOXSYNC_LOG_FORMAT": "json", "BOXSYNC_LOG_LEVEL": "WARNING",
                    "BOXSYNC_FILTERS_ENABLED": "false",
                    "BOXSYNC_JIRA_FIELD_MAP": FIELD_MAP,
                    "BOXSYNC_TENANT_TIMEZONE": daytime_zone(), **extra}
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, ready_timeout: float = 120) -> float:
        """Start it and wait until /readyz says ready; the seconds that took."""
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "processors.cli.main", "worker"], cwd=self.cwd,
                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        self.wait_ready(ready_timeout)
        return time.monotonic() - started

    def wait_ready(self, timeout: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if not self.alive():
                raise RuntimeError(f"worker {self.name} exited; log {self.log_path}")
            if self.http("/readyz")[0] == 200:
                return time.monotonic() - started
            time.sleep(0.25)
        raise RuntimeError(f"worker {self.name} not ready in {timeout:.0f} s; "
                           f"log {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def http(self, path: str, timeout: float = 3) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def stages(self) -> dict[str, psutil.Process]:
        """The stage processes (bs-ingest, bs-collapse.2, ...) by name: the worker's children."""
        found: dict[str, psutil.Process] = {}
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if child.name().startswith("bs-"):
                        found[child.name()] = child
        return found

    def kill9(self) -> None:
        """SIGKILL the main process; its stage processes die with it (PR_SET_PDEATHSIG)."""
        assert self.process is not None
        stages = list(self.stages().values())
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        with contextlib.suppress(psutil.Error):
            psutil.wait_procs(stages, timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def metrics(self) -> Metrics:
        status, body = self.http("/metrics", timeout=10)
        if status != 200:
            raise RuntimeError(f"worker {self.name}: /metrics answered {status}")
        return Metrics.parse(body.decode())

    def memory(self) -> dict[str, tuple[int, int]]:
        """RSS bytes and threads of the main process ("main") and of each stage process."""
        out: dict[str, tuple[int, int]] = {}
        with contextlib.suppress(psutil.Error):
            main = psutil.Process(self.pid)
            out["main"] = (main.memory_info().rss, main.num_threads())
        for name, proc in self.stages().items():
            with contextlib.suppress(psutil.Error):
                out[name] = (proc.memory_info().rss, proc.num_threads())
        return out


@dataclass
class Metrics:
    """Samples of one /metrics page: name → [(labels, value)]."""

    samples: dict[str, list[tuple[dict[str, str], float]]]

    @classmethod
    def parse(cls, text: str) -> Metrics:
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return cls(samples)

    def total(self, name: str, **labels: str) -> float:
        return sum(value for found, value in self.samples.get(name, ())
                   if all(found.get(k) == v for k, v in labels.items()))

    def by(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for found, value in self.samples.get(name, ()):
            out[found.get(label, "")] = out.get(found.get(label, ""), 0.0) + value
        return out

    def quantile(self, name: str, q: float) -> float:
        """Prometheus's histogram_quantile over `<name>_bucket`: linear within a bucket."""
        buckets = sorted(((float(labels["le"]), value)
                          for labels, value in self.samples.get(f"{name}_bucket", ())),
                         key=lambda pair: pair[0])
        if not buckets or buckets[-1][1] == 0:
            return float("nan")
        rank = q * buckets[-1][1]
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in buckets:
            if count >= rank:
                if bound == float("inf"):
                    return lower_bound
                share = (rank - lower_count) / max(count - lower_count, 1e-9)
                return lower_bound + (bound - lower_bound) * share
            lower_bound, lower_count = bound, count
        return lower_bound


# --- PostgreSQL: the tenant's app cache -----------------------------------------------------


def tasks_table(prefix: str) -> str:
    """The qualified `tasks` table of this tenant (processors.store.tenancy names it)."""
    return f'"{schema_for_prefix(prefix)}".tasks'


def cached_tasks(database_url: str, prefix: str, task_ids: Iterable[str]
                 ) -> dict[str, tuple[dict[str, Any], bool]]:
    """task id → (fields, deleted) from the app cache, for the given ids."""
    ids = list(task_ids)
    out: dict[str, tuple[dict[str, Any], bool]] = {}
    with db.connect(database_url, autocommit=True) as conn:
        table = tasks_table(prefix)
        for start in range(0, len(ids), 5000):
            chunk = ids[start:start + 5000]
            for task_id, fields, deleted in conn.execute(
                    f"SELECT task_id, fields, deleted FROM {table} "
                    "WHERE task_id = ANY(%s)", (chunk,)):
                out[task_id] = (fields or {}, bool(deleted))
    return out
