"""The faust app: worker lifecycle, the web server, and the hot path as a service.

faust runs what it does well here: the process lifecycle and signals, the web server
(`/healthz`, `/readyz`, `/metrics`), and later the low-volume agents. The high-volume hops
(raw events → changes → updates) run as transactional confluent-kafka loops, one child
process per stage (processors.runtime.stage_process), because faust's per-event machinery
costs about 30 times a batch loop, and because two processes use two cores.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

import faust
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from processors.metrics import Metrics
from processors.runtime.stage_process import MergedMetrics, StageSupervisor
from processors.settings import Settings
from processors.stages import stage
from processors.store import db
from processors.store.tenancy import schema_of
from processors.web.webhooks import register_webhooks

READY_BEAT_SECONDS = 15


def create_app(settings: Settings, metrics: Metrics, database_url: str,
               recreated_topics: list[dict[str, str]] | None = None) -> faust.App:
    """`recreated_topics`: the topics found re-created at start (shown by /readyz)."""
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
        broker_credentials=broker_credentials(settings),
    )
    supervisor = StageSupervisor(settings, database_url, tuple(
        name for chosen in settings.worker_stages
        for name in stage(chosen).process_names(settings)),
        on_restart=lambda name: metrics.stage_restarts.labels(name).inc())
    exposition = CollectorRegistry(auto_describe=True)
    exposition.register(MergedMetrics(metrics.registry, supervisor))

    @app.service
    class HotPath(Service):
        """Starts the stage processes with the worker and stops them with it."""

        async def on_start(self) -> None:
            supervisor.start()

        async def on_stop(self) -> None:
            await asyncio.to_thread(supervisor.stop)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        problems = supervisor.problems(time.time(), READY_BEAT_SECONDS)
        try:
            await asyncio.to_thread(_ping_database, database_url)
        except Exception as exc:
            problems.append(f"postgres: {type(exc).__name__}")
        status = 503 if problems else 200
        details = {"database_schema": schema_of(database_url),
                   "topics_recreated_since_last_start": recreated_topics or []}
        return web.json({"ready": not problems, "problems": problems, "details": details},
                        status=status)

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        body = generate_latest(exposition)
        return web.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    register_webhooks(app, settings, metrics)
    return app


def broker_credentials(settings: Settings) -> faust.auth.Credentials | None:
    """The faust app's (aiokafka's) view of the Kafka security settings, which the stage
    loops take from processors.runtime.kafka.client_config."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    ca_file = str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file else None
    context = ssl.create_default_context(cafile=ca_file) if protocol.endswith("SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    password = settings.kafka_sasl_password
    return faust.SASLCredentials(username=settings.kafka_sasl_username,
                                 password=password.get_secret_value() if password else None,
                                 mechanism=settings.kafka_sasl_mechanism,
                                 ssl_context=context)


def _ping_database(database_url: str) -> None:
    with db.connect(database_url, autocommit=True, timeout=3) as conn:
        conn.execute("SELECT 1")
