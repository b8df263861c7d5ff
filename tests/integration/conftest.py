"""Integration fixtures: the real local stack, a fresh topic prefix per test, worker processes.

The stack is started by `make test` (and started here if it is not running, so that plain
`pytest tests/integration` works too); nothing here stops it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from processors.settings import Settings
from tests.support.kafka import WorkerProcess, create_topics, unique_prefix, worker_env


@pytest.fixture
def settings(base_settings: Settings, database_url: str) -> Settings:
    """Settings of one test: its own topics (unique prefix), short windows, two partitions,
    no filters (tests of the filters turn them on: `filters_enabled=True`)."""
    settings = base_settings.model_copy(update={
        "topic_prefix": unique_prefix(), "collapse_interval_seconds": 2, "grace_seconds": 0.5,
        "partitions": 2, "filters_enabled": False})
    create_topics(settings)
    return settings


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[object]:
    """`start_worker(settings, **env)` starts a worker; all are stopped after the test."""
    workers: list[WorkerProcess] = []

    def start(settings: Settings, **extra_env: str) -> WorkerProcess:
        env = worker_env(settings, **extra_env)
        worker = WorkerProcess(env, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker.start()

    yield start
    for worker in workers:
        worker.stop()
