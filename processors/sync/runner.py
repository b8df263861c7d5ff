"""The sync runner: the `sync` process of a worker, executing queued full and incremental runs.

Input: PostgreSQL `sync_runs` (queued by commands, processors.boxes.commands, and by the daily
schedule here). Output: `task.updates` (key: task id; `sync_type` full, incremental, or
partial for the catch-up after a full sync), `sync.status` (key: box id; running with
`processed`/`total` and `read_only: true` at least every 2 s, then completed or failed), the
`tasks` cache and `box_state`. One run at a time per runner, one full sync per box at a time.

Delivery: at least once, idempotent (see processors.sync.execute). On start, runs this runner
left `running` (it was killed) or whose runner stopped beating are failed `interrupted`, their
boxes flagged for a new full sync and un-read-only'd by a failed status.
The schedule: once per local night, at an hour derived from the tenant and the date
(processors.sync.schedule), recorded before the run is queued so it never runs twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from confluent_kafka import Producer

from processors.boxes.logic import status_key, sync_status
from processors.errors import BoxsyncError
from processors.logs import event
from processors.metrics import Metrics
from processors.runtime.kafka import produce, producer_config, topic
from processors.settings import Settings
from processors.store import boxes, db, runs
from processors.store.source_limits import PgLimitStore
from processors.sync.execute import RunContext, Sources, Superseded, full_sync, incremental_sync
from processors.sync.scheduling import NightlySchedule
from processors.sync.sources import build_sources
from processors.upkeep.worker import SourceUpkeep
from processors.wire import iso_utc
from schemas.topics import SYNC_STATUS, TASK_UPDATES

log = logging.getLogger("boxsync.sync")
IDLE_SECONDS = 0.5
GAUGE_SECONDS = 10.0


class SyncRunner:
    """Has the loop interface the stage processes run: `run(stop)`, `assigned_once`,
    `last_beat` (the runner is ready once it has recovered orphaned runs)."""

    def __init__(self, settings: Settings, metrics: Metrics, database_url: str,
                 sources: Sources | None = None, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._metrics = metrics
        self._database_url = database_url
        self._sources = sources
        self._clock = clock
        self._owner = f"{settings.topic_prefix}{settings.worker_instance}:sync"
        self._updates_topic = topic(settings, TASK_UPDATES)
        self._status_topic = topic(settings, SYNC_STATUS)
        self._schedule = NightlySchedule(settings)
        self._gauge_at = 0.0
        self.assigned_once = False
        self.last_beat = 0.0

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self._session(stop)
            except Exception as exc:  # logged; the next session fails the run it left
                self._metrics.stage_errors.labels("sync").inc()
                event(log, logging.ERROR, "sync runner failed; starting again",
                      error=f"{type(exc).__name__}: {exc}")
                stop.wait(2.0)

    def _session(self, stop: threading.Event) -> None:
        producer = Producer(producer_config(self._settings))
        # The sources' buckets live in PostgreSQL: every worker of the tenant shares them.
        sources = self._sources or build_sources(
            self._settings, store=PgLimitStore(self._database_url), metrics=self._metrics)
        upkeep = SourceUpkeep(self._settings, sources, self._clock)
        with db.connect(self._database_url, autocommit=True) as conn:
            self._recover(conn, producer)
            self.assigned_once = True
            while not stop.is_set():
                self.last_beat = self._clock()
                self._housekeeping(conn, producer)
                for queued in upkeep.tick(conn, producer):
                    self._status(producer, queued, "queued", total=len(queued.box_ids))
                run = runs.claim(conn, self._owner, self._settings.topic_prefix)
                if run is None:
                    stop.wait(IDLE_SECONDS)
                    continue
                read_only = self._metrics.read_only_since
                if run.sync_type == "full":  # the box is read-only while it runs
                    read_only.set(self._clock())
                try:
                    self._execute(conn, producer, sources, run)
                finally:
                    read_only.set(0)

    def _recover(self, conn: psycopg.Connection, producer: Producer) -> None:
        for run in runs.orphans(conn, self._owner, self._settings.topic_prefix):
            event(log, logging.WARNING, "sync run interrupted; box flagged for a new full sync",
                  run_id=run.run_id, box_id=run.box_id)
            self._status(producer, run, "failed", reason="interrupted")
            self._metrics.sync_runs.labels(run.sync_type, "failed").inc()
        producer.flush(30)

    def _housekeeping(self, conn: psycopg.Connection, producer: Producer) -> None:
        now = self._clock()
        queued = self._schedule.maybe_queue(conn, now)
        if queued is not None:
            self._status(producer, queued, "queued", total=len(queued.box_ids))
        if now - self._gauge_at >= GAUGE_SECONDS:
            self._gauge_at = now
            for state, count in runs.boxes_by_sync_state(conn).items():
                self._metrics.boxes.labels(state).set(count)

    def _execute(self, conn: psycopg.Connection, producer: Producer, sources: Sources,
                 run: runs.Run) -> None:
        started = self._clock()
        event(log, logging.INFO, "sync run started", run_id=run.run_id, box_id=run.box_id,
              sync_type=run.sync_type)
        ctx = RunContext(conn, sources, lambda update: self._emit(producer, update),
                         lambda processed, total: self._progress(conn, producer, run, ctx),
                         self._clock)
        self._status(producer, run, "running", read_only=run.sync_type == "full")
        state, reason, detail = "completed", None, None
        try:
            self._dispatch(ctx, run)
            producer.flush(60)
        except Superseded as exc:
            state, reason, detail = "failed", "superseded", str(exc)
        except BoxsyncError as exc:  # the sources' errors carry the status reason
            state, reason = "failed", getattr(exc, "reason", "source_unavailable")
            detail = str(exc)[:500]
            event(log, logging.ERROR, "sync run failed", run_id=run.run_id, error=detail)
        self._finish(conn, producer, run, ctx, (state, reason, detail), started)

    def _dispatch(self, ctx: RunContext, run: runs.Run) -> None:
        if run.sync_type == "full":
            box = boxes.get_box(ctx.conn, run.box_id or "")
            if box is None:
                raise BoxsyncError(f"box {run.box_id} is not defined on box.definitions")
            full_sync(ctx, run, box)
            return
        before = {box_id: runs.members(ctx.conn, box_id) for box_id in run.box_ids}
        for box_id in run.box_ids:
            box = boxes.get_box(ctx.conn, box_id)
            if box is not None:
                incremental_sync(ctx, run, box, before[box_id])

    def _finish(self, conn: psycopg.Connection, producer: Producer, run: runs.Run,
                ctx: RunContext, outcome: tuple[str, str | None, str | None],
                started: float) -> None:
        state, reason, detail = outcome
        runs.progress(conn, run.run_id, ctx.processed, ctx.total, ctx.emitted, ctx.left)
        runs.finish(conn, run.run_id, state, reason)
        if state == "completed" and run.sync_type == "full" and run.box_id is not None:
            boxes.mark_full_synced(conn, run.box_id, datetime.fromtimestamp(self._clock(), UTC))
        total = ctx.total if ctx.total is not None else ctx.processed
        self._status(producer, run, state, reason=reason, processed=ctx.processed, total=total,
                     detail=detail)
        producer.flush(30)
        self._metrics.sync_runs.labels(run.sync_type, state).inc()
        self._metrics.sync_run_duration.labels(run.sync_type).observe(self._clock() - started)
        event(log, logging.INFO, "sync run ended", run_id=run.run_id, state=state, reason=reason,
              processed=ctx.processed, emitted=ctx.emitted, left=ctx.left)

    def _progress(self, conn: psycopg.Connection, producer: Producer, run: runs.Run,
                  ctx: RunContext) -> bool:
        stop = runs.progress(conn, run.run_id, ctx.processed, ctx.total, ctx.emitted, ctx.left)
        self._status(producer, run, "running", processed=ctx.processed, total=ctx.total,
                     read_only=run.sync_type == "full")
        self.last_beat = self._clock()
        return stop

    def _emit(self, producer: Producer, update: dict[str, Any]) -> None:
        produce(producer, self._updates_topic, orjson.dumps(update), update["task_id"])
        self._metrics.task_updates_emitted.labels(update["sync_type"], update["op"]).inc()

    def _status(self, producer: Producer, run: runs.Run, state: str, **fields: Any) -> None:
        at = iso_utc(datetime.fromtimestamp(self._clock(), tz=UTC))
        status = sync_status(run.box_id, state, at,
                             command_id=run.command_id, requested_by=run.requested_by,
                             run_id=run.run_id, sync_type=run.sync_type, **fields)
        produce(producer, self._status_topic, orjson.dumps(status), status_key(status))
        producer.poll(0)

