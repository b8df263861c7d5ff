"""The faust app: worker lifecycle, the web server, and the hot path as a service.

faust runs what it does well here: the process lifecycle and signals, the web server
(`/healthz`, `/readyz`, `/metrics`), and later the low-volume agents. The high-volume hops
(raw events → changes → updates) run as transactional confluent-kafka loops in threads of
this process, because faust's per-event machinery costs about 30 times a batch loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import faust
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from processors.collapse.agents import CollapseStage
from processors.ingest.agents import IngestStage
from processors.metrics import Metrics
from processors.runtime.kafka import consumer_config, group_id, producer_config
from processors.runtime.loop import TransactionalLoop
from processors.settings import Settings
from processors.store import db

READY_BEAT_SECONDS = 15


def build_loops(settings: Settings, metrics: Metrics, database_url: str
                ) -> list[TransactionalLoop]:
    """The hot-path stages, each on its own transactional loop."""
    def on_error(stage: str) -> None:
        metrics.stage_errors.labels(stage).inc()

    loops = []
    for stage in (IngestStage(settings, metrics),
                  CollapseStage(settings, metrics, database_url)):
        transactional_id = (f"{settings.topic_prefix}boxsync-{stage.name}-"
                            f"{settings.worker_instance}")
        loops.append(TransactionalLoop(
            stage, consumer_config(settings, group_id(settings, stage.name)),
            producer_config(settings, transactional_id), on_error=on_error))
    return loops


def create_app(settings: Settings, metrics: Metrics, database_url: str) -> faust.App:
    app = faust.App(
        f"{settings.topic_prefix}boxsync",
        broker=f"kafka://{settings.kafka_bootstrap}",
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_host=settings.web_bind,
        store="memory://",
        autodiscover=False,
        topic_replication_factor=1,
        topic_partitions=settings.partitions,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.5,
    )
    loops = build_loops(settings, metrics, database_url)

    @app.service
    class HotPath(Service):
        """Starts the stage loops in threads and stops them with the worker."""

        def __post_init__(self) -> None:
            self._stop = threading.Event()
            self._threads: list[threading.Thread] = []

        async def on_start(self) -> None:
            for loop in loops:
                thread = threading.Thread(target=loop.run, args=(self._stop,),
                                          name=f"boxsync-{loop.stage.name}", daemon=True)
                thread.start()
                self._threads.append(thread)

        async def on_stop(self) -> None:
            self._stop.set()
            for thread in self._threads:
                await asyncio.to_thread(thread.join, 20)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        problems = _loop_problems(loops)
        try:
            await asyncio.to_thread(_ping_database, database_url)
        except Exception as exc:
            problems.append(f"postgres: {type(exc).__name__}")
        status = 503 if problems else 200
        return web.json({"ready": not problems, "problems": problems}, status=status)

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        body = generate_latest(metrics.registry)
        return web.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app


def _loop_problems(loops: list[TransactionalLoop]) -> list[str]:
    now = time.time()
    problems = []
    for loop in loops:
        if not loop.assigned_once:
            problems.append(f"{loop.stage.name}: waiting for partitions")
        elif now - loop.last_beat > READY_BEAT_SECONDS:
            problems.append(f"{loop.stage.name}: no progress for {now - loop.last_beat:.0f}s")
    return problems


def _ping_database(database_url: str) -> None:
    with db.connect(database_url, autocommit=True, timeout=3) as conn:
        conn.execute("SELECT 1")
