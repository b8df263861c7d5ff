"""The stage registry: every stage of the worker, in the order data flows through them.

One entry names a stage, the topics it reads and writes, the class that runs it and the
setting with its process count. The worker (`processors.app`) starts what the registry lists,
`BOXSYNC_WORKER_STAGES` is checked against it, and a stage process imports only its own
stage's module (`factory`), by name, after it has started: nothing here imports a stage, so
the registry sits below every module that reads it and no import circle goes through it.

A new stage is one entry here plus its package (a `logic.py` without I/O and its wiring).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas.topics import (
    BOX_DEFINITIONS,
    JIRA_EVENTS,
    JIRA_PERMISSIONS,
    OKR_LINKS,
    OKR_UPDATES,
    SYNC_CHANGES,
    SYNC_COMMANDS,
    SYNC_DEADLETTER,
    SYNC_REFERENCE,
    SYNC_STATUS,
    TASK_UPDATES,
    TRELLO_EVENTS,
    TopicSpec,
)

if TYPE_CHECKING:
    from processors.settings import Settings


@dataclass(frozen=True)
class StageSpec:
    name: str
    # "module:Class", constructed as Class(settings, metrics, database_url).
    factory: str
    inputs: tuple[TopicSpec, ...]
    outputs: tuple[TopicSpec, ...]
    # The Settings field with the stage's process count; None: one process per worker.
    processes_setting: str | None = None
    # False: the stage runs its own loop (the sync runner claims runs from PostgreSQL)
    # rather than the transactional consume-process-produce loop.
    transactional: bool = True

    def processes(self, settings: Settings) -> int:
        if self.processes_setting is None:
            return 1
        return int(getattr(settings, self.processes_setting))

    def process_names(self, settings: Settings) -> list[str]:
        """`ingest`, `ingest.2`, ...: one name per process, stable across restarts (each
        names its transactional producer)."""
        count = self.processes(settings)
        return [self.name] + [f"{self.name}.{n}" for n in range(2, count + 1)]

    def load(self) -> Callable[..., Any]:
        module, _, attribute = self.factory.partition(":")
        factory: Callable[..., Any] = getattr(importlib.import_module(module), attribute)
        return factory


REGISTRY: tuple[StageSpec, ...] = (
    StageSpec("ingest", "processors.ingest.agents:IngestStage",
              (JIRA_EVENTS, TRELLO_EVENTS), (SYNC_CHANGES, SYNC_REFERENCE, SYNC_DEADLETTER),
              processes_setting="ingest_processes"),
    StageSpec("collapse", "processors.collapse.agents:CollapseStage",
              (SYNC_CHANGES,), (TASK_UPDATES, OKR_UPDATES, SYNC_DEADLETTER),
              processes_setting="collapse_processes"),
    StageSpec("boxes", "processors.boxes.agents:BoxesStage",
              (BOX_DEFINITIONS, JIRA_PERMISSIONS, OKR_LINKS, SYNC_COMMANDS, SYNC_REFERENCE),
              (SYNC_STATUS, SYNC_DEADLETTER)),
    StageSpec("sync", "processors.sync.runner:SyncRunner", (), (TASK_UPDATES, SYNC_STATUS),
              transactional=False),
)
STAGE_NAMES: tuple[str, ...] = tuple(spec.name for spec in REGISTRY)


def stage(name: str) -> StageSpec:
    """The stage a process name (`collapse`, `collapse.2`) belongs to."""
    wanted = name.split(".")[0]
    for spec in REGISTRY:
        if spec.name == wanted:
            return spec
    raise ValueError(f"unknown stage {wanted!r} (stages: {', '.join(STAGE_NAMES)})")
