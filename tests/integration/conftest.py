"""Integration fixtures: the real local stack, a fresh tenant per test (a topic prefix, its
topics and its PostgreSQL schema), worker processes.

The stack is started by `make test` (and started here if it is not running, so that plain
`pytest tests/integration` works too); nothing here stops it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.settings import Settings
from processors.stack.postgres import resolve_database_url
from tests.support.kafka import (
    WorkerProcess,
    create_topics,
    delete_topics,
    unique_prefix,
    worker_env,
)
from tests.support.tenants import drop_tenant, migrate_tenant


@pytest.fixture
def own_topics(base_settings: Settings) -> Iterator[Callable[..., Settings]]:
    """`own_topics(**overrides)`: settings of a new tenant (a unique topic prefix) whose topics
    exist and whose schema is migrated; both are deleted after the test (the workers are
    stopped first: fixtures end in reverse)."""
    made: list[Settings] = []

    def make(**overrides: Any) -> Settings:
        settings = base_settings.model_copy(update={"topic_prefix": unique_prefix(),
                                                    **overrides})
        made.append(settings)
        create_topics(settings)
        migrate_tenant(settings)
        return settings

    yield make
    for settings in made:
        delete_topics(base_settings.kafka_bootstrap, settings.topic_prefix)
        drop_tenant(settings)


@pytest.fixture
def settings(own_topics: Callable[..., Settings]) -> Settings:
    """Settings of one test: its own topics (unique prefix), short windows, two partitions,
    no filters (tests of the filters turn them on: `filters_enabled=True`)."""
    return own_topics(collapse_interval_seconds=2, grace_seconds=0.5, partitions=2,
                      filters_enabled=False)


@pytest.fixture
def database_url(settings: Settings) -> str:
    """The URL of this test's tenant schema (overrides the session's `public` one)."""
    return resolve_database_url(settings)


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
