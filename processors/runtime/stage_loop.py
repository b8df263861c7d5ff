"""The loop one stage process runs: the registry's stage on its transactional loop.

Imported by the stage process itself (processors.runtime.stage_process), which then imports
only its own stage's module through the registry (processors.stages): a collapse process
loads neither the web server nor the ingest.
"""

from __future__ import annotations

from typing import Any

from processors.metrics import Metrics
from processors.runtime.incarnations import admin_client, topic_ids
from processors.runtime.kafka import consumer_config, group_id, producer_config
from processors.runtime.loop import TransactionalLoop
from processors.runtime.progress import LagTracker, Throughput
from processors.settings import Settings
from processors.stages import stage


def build_loop(process_name: str, settings: Settings, metrics: Metrics,
               database_url: str) -> Any:
    """The stage process `process_name` (`ingest`, `ingest.2`, `sync`: the stage, and which
    of its processes): a TransactionalLoop, or the stage's own runner when it has no
    transactional loop (the sync runner). Both have run(stop), assigned_once, last_beat."""
    spec = stage(process_name)
    runner = spec.load()(settings, metrics, database_url)
    if not spec.transactional:
        return runner
    # Stable per process across restarts, distinct between processes: a restarted process
    # fences its killed predecessor, and two processes never fence each other.
    transactional_id = f"{settings.topic_prefix}boxsync-{process_name}-{settings.worker_instance}"
    admin = admin_client(settings)
    return TransactionalLoop(
        runner, consumer_config(settings, group_id(settings, runner.name)),
        producer_config(settings, transactional_id),
        topic_ids=lambda names: topic_ids(admin, names),
        on_error=lambda name: metrics.stage_errors.labels(name).inc(),
        on_batch=lambda name, records: metrics.stage_batch_records.labels(name).observe(records),
        lag=LagTracker(metrics.consumer_lag, runner.name),
        throughput=Throughput(metrics.stage_records_rate, runner.name))
