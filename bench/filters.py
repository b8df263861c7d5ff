"""Reference data for the filter-cost comparison in `bench.pipeline` (issue 4).

What the filters cost is only visible when they have something to do, so the "with filters"
worker starts with a tenant's worth of reference data on its compacted topics:

- 1,000 `Box` definitions on `box.definitions` (key: box id) over 48 of the workload's 50
  Jira projects (the updates of the other two reach no box and are not emitted): one open
  program box per project with no label rule (so every other task reaches some box), then,
  on random projects, 40 % own-scope boxes with one or two `labels_all`, 5 % own-scope
  programs over two or three projects, 50 % sub-scope sprints and iterations under a program
  box (most with a label rule), 5 % closed or archived; each with a scope owner. An emitted
  update reaches about 8 boxes;
- 10,000 `PermissionGrant`s on `jira.permissions` (key: `<user id>|<project>`): every one of
  the workload's 200 authors on every project, with `BROWSE_PROJECTS` except on about 3 % of
  the pairs (never for the sentinels' author), so a few percent of the changes are denied,
  as in a real tenant, and most updates reach several boxes.

The boxes stage writes what it reads to PostgreSQL; `digest()` lets a first worker do that
and stops it before the measured worker starts, so that writing 11,000 reference rows does
not run inside the measurement (in production reference data changes rarely). The collapse
processes still read the topics to their end when they start, as they always do.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from processors.filters.logic import BROWSE_PROJECTS
from processors.filters.reader import ReferenceReader
from processors.runtime.kafka import group_id
from processors.settings import Settings
from processors.store import db
from schemas.reference import Box, PermissionGrant, permission_key
from schemas.topics import BOX_DEFINITIONS, JIRA_PERMISSIONS
from tests.support.kafka import WorkerProcess, free_port, publish_keyed, worker_env

BOXES = 1000
DENIED_SHARE = 0.03
UNBOXED_PROJECTS = 2  # projects no box names: their updates reach no box
Record = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Reference:
    boxes: list[Record]
    grants: list[Record]
    denied_pairs: int


def reference_data(run: str, projects: Sequence[str], users: Sequence[dict[str, Any]],
                   labels: Sequence[str], *, boxes: int = BOXES, seed: int = 11) -> Reference:
    """The boxes and grants described in the module docstring; box ids start with `run`."""
    rng = random.Random(seed)
    boxed = list(projects[:-UNBOXED_PROJECTS])
    programs = [_box(f"{run}-box-{n:04d}", "program", "own", [project], owner=users[n])
                for n, project in enumerate(boxed)]
    made = list(programs)
    for n in range(len(programs), boxes):
        project_index = rng.randrange(len(boxed))
        project, owner = boxed[project_index], users[n % len(users)]
        box_id, kind = f"{run}-box-{n:04d}", rng.random()
        if kind < 0.40:  # a team's slice of a project
            box = _box(box_id, "project", "own", [project], owner,
                       labels_all=rng.sample(list(labels), 1 if kind < 0.28 else 2))
        elif kind < 0.45:  # a program over a few projects
            others = rng.sample([p for p in boxed if p != project], rng.choice((1, 2)))
            box = _box(box_id, "program", "own", [project, *others], owner)
        elif kind < 0.95:  # an iteration or sprint inside the project's program box
            box = _box(box_id, rng.choice(("sprint", "iteration")), "sub", [], owner,
                       parent=programs[project_index]["box_id"],
                       labels_all=rng.sample(list(labels), 1) if kind < 0.80 else [])
        else:  # done with: closed, or archived
            box = _box(box_id, "project", "own", [project], owner,
                       status="closed" if kind < 0.975 else "in_progress",
                       archived=kind >= 0.975)
        made.append(box)
    for box in made:
        Box.model_validate(box)  # the contract model: a typo here would silently filter all
    grants, denied = [], 0
    for index, user in enumerate(users):
        for project in projects:
            # The sentinels' author (user 0) sees everything: their windows must close normally.
            browse = index == 0 or rng.random() >= DENIED_SHARE
            denied += not browse
            grant = {"schema_version": 1, "user_id": user["accountId"], "project": project,
                     "permissions": [BROWSE_PROJECTS, "CREATE_ISSUES", "EDIT_ISSUES"] if browse
                     else ["ADD_COMMENTS"], "updated_at": "2026-11-01T09:00:00Z"}
            PermissionGrant.model_validate(grant)
            grants.append((permission_key(user["accountId"], project), grant))
    return Reference([(box["box_id"], box) for box in made], grants, denied)


def _box(box_id: str, box_type: str, scope_type: str, projects: list[str],
         owner: dict[str, Any], *, parent: str | None = None, labels_all: list[str] | None = None,
         status: str = "in_progress", archived: bool = False) -> dict[str, Any]:
    person = {"kind": "scope_owner", "id": owner["accountId"], "name": owner["displayName"],
              "source": "jira"}
    return {"schema_version": 1, "box_id": box_id, "name": f"{box_type} {box_id}",
            "box_type": box_type, "scope_type": scope_type, "parent_box_id": parent,
            "status": status, "archived": archived,
            "scope": {"jira_projects": projects, "trello_boards": [],
                      "labels_all": labels_all or []},
            "manual_tasks": [], "scope_owner": person, "admins": [owner["accountId"]],
            "timezone": "Europe/Berlin"}


def publish(settings: Settings, reference: Reference) -> None:
    publish_keyed(settings, BOX_DEFINITIONS.name, reference.boxes)
    publish_keyed(settings, JIRA_PERMISSIONS.name, reference.grants)


def digest(settings: Settings, log: Path, timeout: float = 180) -> float:
    """Run a worker until its boxes stage has committed every reference record, then stop it;
    the seconds that took."""
    started = time.monotonic()
    worker = WorkerProcess(worker_env(settings, BOXSYNC_WEB_PORT=str(free_port()),
                                      BOXSYNC_LOG_LEVEL="WARNING"), log)
    watch = CommitWatch(settings, "boxes", [BOX_DEFINITIONS.full_name(settings.topic_prefix),
                                            JIRA_PERMISSIONS.full_name(settings.topic_prefix)])
    try:
        worker.start()
        deadline = time.monotonic() + timeout
        while not watch.done():
            if time.monotonic() > deadline:
                raise SystemExit(f"the boxes stage did not read the reference data in "
                                 f"{timeout:.0f} s; worker log: {log}")
            time.sleep(0.3)
    finally:
        watch.close()
        worker.stop()
    return time.monotonic() - started


def reader_load(settings: Settings, database_url: str) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, boxes, grants) of one `ReferenceReader.load()`, the read each
    collapse process does at start-up; also proves the worker will see what was published."""
    connection: list[Any] = []

    def connect() -> Any:
        if not connection:
            connection.append(db.connect(database_url, autocommit=True))
        return connection[0]

    reader = ReferenceReader(settings, connect)
    started, cpu = time.perf_counter(), time.process_time()
    try:
        reader.load()
        return (time.perf_counter() - started, time.process_time() - cpu,
                len(reader.state.boxes), len(reader.state.grants))
    finally:
        reader.close()
        for conn in connection:
            conn.close()


class CommitWatch:
    """Tells, cheaply and repeatedly, whether a stage's consumer group has committed every
    record now on some topics (partitions without records are not waited for)."""

    def __init__(self, settings: Settings, stage: str, topics: Sequence[str],
                 one_transaction: bool = False) -> None:
        # Records published in one transaction end with its commit marker, which takes an
        # offset a consumer never reads past (its position stops at the marker).
        self._slack = 1 if one_transaction else 0
        self._consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                                   "group.id": group_id(settings, stage)})
        self._partitions, self._ends = [], []
        for name in topics:
            metadata = self._consumer.list_topics(name, timeout=10).topics[name]
            for partition in metadata.partitions:
                tp = TopicPartition(name, partition)
                end = self._consumer.get_watermark_offsets(tp, timeout=10)[1]
                if end > 0:
                    self._partitions.append(tp)
                    self._ends.append(end)

    def done(self) -> bool:
        committed = self._consumer.committed(self._partitions, timeout=10)
        return all(tp.offset >= end - self._slack
                   for tp, end in zip(committed, self._ends, strict=True))

    def close(self) -> None:
        self._consumer.close()


def scrape(worker: WorkerProcess) -> dict[str, dict[str, float]]:
    """The worker's /metrics: metric name → label values joined with a comma
    (`{reason="no_box"}` → `no_box`) → value. Series without labels are left out."""
    _, body = worker.http("/metrics")
    metrics: dict[str, dict[str, float]] = {}
    for line in body.decode().splitlines():
        name, brace, rest = line.partition("{")
        if not brace or line.startswith("#"):
            continue
        labels, _, number = rest.rpartition("} ")
        key = ",".join(part.partition("=")[2].strip('"') for part in labels.split(",") if part)
        series = metrics.setdefault(name, {})
        series[key] = series.get(key, 0.0) + float(number)
    return metrics
