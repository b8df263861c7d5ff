"""One sync run, executed: read the sources page by page, write the cache, emit the updates,
report progress (wiring around processors.sync.logic).

Delivery: at least once. Each page is written to PostgreSQL (idempotent: fields merge by
source time) and its updates produced with a deterministic `update_id` (task, sync type, run),
so a consumer that saw an update before can tell; a run that dies midway is failed by the next
runner and its box flagged for a new full sync (processors.store.runs.orphans).

No change is lost across a full sync: the run emits what the cache holds after merging what
it read (never older than a partial change already applied), and at its end it emits, again,
every task of the box that a partial update changed after the run wrote it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from processors.errors import BoxsyncError
from processors.sources.limits import Priority
from processors.sources.model import SourcePage, SourceTask, SourceUnavailable
from processors.store import runs, synced
from processors.sync.logic import (
    TECHNICAL_APP,
    ProgressClock,
    differs,
    has_labels,
    left_update,
    source_of,
    synced_update,
    visible,
)
from processors.wire import update_id
from schemas.reference import Box

Emit = Callable[[dict[str, Any]], None]
Report = Callable[[int, int | None], bool]  # (processed, total) → stop asked?


class Superseded(BoxsyncError):
    """A newer full sync of the same box asked this one to stop."""


class Sources:
    """What a run reads from: the configured Jira and Trello clients (either may be None)."""

    def __init__(self, jira: Any = None, trello: Any = None) -> None:
        self.jira = jira
        self.trello = trello

    def pages(self, box: Box, *, updated_only: bool = False, jql: str | None = None,
              priority: Priority = Priority.FULL) -> Iterator[SourcePage]:
        """The box's tasks; `priority` is the run's place at the sources' limiters (full
        syncs last, incremental ones before them)."""
        scope = box.scope
        if scope.jira_projects:
            source = self._require(self.jira, "Jira", "BOXSYNC_JIRA_BASE_URL")
            listing = source.iter_updated if updated_only else source.iter_pages
            yield from listing(scope.jira_projects, scope.labels_all,
                               jql if jql is not None else (None if updated_only else scope.jql),
                               priority=priority)
        if scope.trello_boards:
            source = self._require(self.trello, "Trello", "BOXSYNC_TRELLO_KEY")
            listing = source.iter_updated if updated_only else source.iter_pages
            yield from listing(scope.trello_boards, priority=priority)

    @staticmethod
    def _require(source: Any, name: str, setting: str) -> Any:
        if source is None:
            raise SourceUnavailable(f"{name} is not configured; set {setting} (and its "
                                    "credentials) to sync boxes whose scope names it")
        return source


@dataclass
class RunContext:
    conn: psycopg.Connection
    sources: Sources
    emit: Emit
    report: Report
    clock: Callable[[], float] = time.time
    processed: int = 0
    emitted: int = 0
    left: int = 0
    total: int | None = None
    update_ids: list[str] = field(default_factory=list)


def full_sync(ctx: RunContext, run: runs.Run, box: Box) -> None:
    """Rebuild one box from its sources, as its scope owner sees it."""
    started = datetime.fromtimestamp(ctx.clock(), tz=UTC)
    owner_id, grants = _scope_owner(ctx, box)
    before = runs.members(ctx.conn, box.box_id)
    author = run.author or TECHNICAL_APP
    progress = ProgressClock(ctx.clock())
    seen: set[str] = set()
    for page in ctx.sources.pages(box):
        taken = [task for task in page.tasks if visible(task, owner_id, grants)
                 and (task.source != "trello" or has_labels(task, box.scope.labels_all))]
        seen.update(task.task_id for task in taken)
        _write(ctx, run, box.box_id, taken, "full", author)
        ctx.processed += len(page.tasks)
        ctx.total = _total(ctx, page)
        _maybe_report(ctx, progress)
    _leave(ctx, run, box.box_id, sorted(set(before) - seen), author)
    _catch_up(ctx, run, box.box_id, started)


def incremental_sync(ctx: RunContext, run: runs.Run, box: Box, cached: dict[str, float]
                     ) -> None:
    """Sync the tasks of one box whose source time differs from the cached one. `cached` is
    the box's members as they were when the run started: a task shared with a box synced
    earlier in the run has a fresh cache time by now, and must still reach this box."""
    owner_id, grants = _scope_owner(ctx, box)
    stale = [task.task_id for page in ctx.sources.pages(box, updated_only=True,
                                                         priority=Priority.INCREMENTAL)
             for task in page.tasks
             if visible(task, owner_id, grants) and differs(task, cached.get(task.task_id))]
    progress = ProgressClock(ctx.clock())
    wanted = set(stale)
    for page in _details(ctx, box, stale):
        taken = [task for task in page.tasks if task.task_id in wanted]
        _write(ctx, run, box.box_id, taken, "incremental", TECHNICAL_APP)
        ctx.processed += len(taken)
        _maybe_report(ctx, progress)


def _scope_owner(ctx: RunContext, box: Box) -> tuple[str | None, dict[str, frozenset[str]]]:
    """The scope owner's id and grants (None: no owner, the technical user sees all)."""
    owner = box.scope_owner
    owner_id = owner.id if owner is not None and owner.kind != "technical" else None
    return owner_id, (runs.grants_of(ctx.conn, owner_id) if owner_id else {})


def _details(ctx: RunContext, box: Box, task_ids: list[str]) -> Iterator[SourcePage]:
    """The full fields of some tasks: Jira by issue id, 100 per search; Trello by listing the
    boards once (its REST API has no filter by card)."""
    jira_ids = [task_id.rsplit(":", 1)[1] for task_id in task_ids if source_of(task_id) == "jira"]
    if jira_ids:
        jira_only = box.model_copy(update={"scope": box.scope.model_copy(
            update={"trello_boards": []})})
        for chunk in _chunks(jira_ids, 100):
            yield from ctx.sources.pages(jira_only, jql=f"id in ({', '.join(chunk)})",
                                         priority=Priority.INCREMENTAL)
    if len(jira_ids) < len(task_ids):
        trello_only = box.model_copy(update={"scope": box.scope.model_copy(
            update={"jira_projects": []})})
        yield from ctx.sources.pages(trello_only, priority=Priority.INCREMENTAL)


def _write(ctx: RunContext, run: runs.Run, box_id: str, tasks: list[SourceTask],
           sync_type: str, author: dict[str, Any]) -> None:
    page = [synced.SyncedTask(task.task_id, task.source, task.source_key, task.project,
                              task.fields, task.updated_at, author,
                              update_id(task.task_id, sync_type, run.run_id)) for task in tasks]
    written = synced.apply_page(ctx.conn, box_id, page)
    for task in tasks:
        if task.task_id in written:
            fields, at = written[task.task_id]
            update = synced_update(task, fields, at, run.run_id, sync_type, author, box_id)
            ctx.emit(update)
            ctx.update_ids.append(update["update_id"])
            ctx.emitted += 1


def _leave(ctx: RunContext, run: runs.Run, box_id: str, task_ids: list[str],
           author: dict[str, Any]) -> None:
    synced.leave_box(ctx.conn, box_id, task_ids)
    now = ctx.clock()
    for task_id in task_ids:
        ctx.emit(left_update(task_id, source_of(task_id), now, run.run_id, author, box_id))
    ctx.left += len(task_ids)


def _catch_up(ctx: RunContext, run: runs.Run, box_id: str, started: datetime) -> None:
    """Emit again the tasks a partial update changed after the run wrote them."""
    for row in runs.changed_since(ctx.conn, box_id, started, ctx.update_ids):
        at = row["source_updated_at"].timestamp() if row["source_updated_at"] else ctx.clock()
        task = SourceTask(row["task_id"], row["source"], row["source_key"], row["project"], at)
        update = synced_update(task, row["fields"], at, f"after:{run.run_id}", "partial",
                               row["last_author"] or TECHNICAL_APP, box_id)
        ctx.emit(update)
        ctx.emitted += 1


def _maybe_report(ctx: RunContext, progress: ProgressClock) -> None:
    if progress.due(ctx.clock()) and ctx.report(ctx.processed, ctx.total):
        raise Superseded("a newer full sync of this box was requested")


def _total(ctx: RunContext, page: SourcePage) -> int | None:
    if page.total is None:
        return ctx.total
    return max(page.total, ctx.processed)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
