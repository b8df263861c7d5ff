"""Integration fixtures: the real local stack, a fresh topic prefix per test, worker processes.

The stack is started by `make test` (and started here if it is not running, so that plain
`pytest tests/integration` works too); nothing here stops it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.settings import Settings
from tests.support.kafka import (
    WorkerProcess,
    create_topics,
    delete_topics,
    unique_prefix,
    worker_env,
)


@pytest.fixture
def own_topics(base_settings: Settings) -> Iterator[Callable[..., Settings]]:
    """`own_topics(**overrides)`: settings with a unique topic prefix whose topics exist;
    they are deleted after the test (the workers are stopped first: fixtures end in reverse)."""
    prefixes: list[str] = []

    def make(**overrides: Any) -> Settings:
        settings = base_settings.model_copy(update={"topic_prefix": unique_prefix(),
                                                    **overrides})
        prefixes.append(settings.topic_prefix)
        create_topics(settings)
        return settings

    yield make
    for prefix in prefixes:
        delete_topics(base_settings.kafka_bootstrap, prefix)


@pytest.fixture
def settings(own_topics: Callable[..., Settings], database_url: str) -> Settings:
    """Settings of one test: its own topics (unique prefix), short windows, two partitions,
    no filters (tests of the filters turn them on: `filters_enabled=True`)."""
    return own_topics(collapse_interval_seconds=2, grace_seconds=0.5, partitions=2,
                      filters_enabled=False)


@pytest.fixture
def start_worker(tmp_path: Path, own_topics: object) -> Iterator[object]:
    """`start_worker(settings, **env)` starts a worker; all are stopped after the test
    (before its topics go: this fixture depends on `own_topics`, so it ends first)."""
    workers: list[WorkerProcess] = []

    def start(settings: Settings, **extra_env: str) -> WorkerProcess:
        env = worker_env(settings, **extra_env)
        worker = WorkerProcess(env, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker.start()

    yield start
    for worker in workers:
        worker.stop()
