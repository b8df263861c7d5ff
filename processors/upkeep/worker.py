"""The source upkeep a worker's sync process does between runs (issue 18):

- with BOXSYNC_MANAGE_WEBHOOKS=true, `webhooks sync` at start and then hourly, and every 10
  minutes the deliveries Jira Cloud lists as failed fed to `jira.events`
  (processors.upkeep.recovery: deduplicated by ingest and the tasks as usual);
- with BOXSYNC_SILENCE_RESYNC_MINUTES > 0, the silence check of every eligible box with Jira
  projects, every quarter of that period (at least a minute), queuing incremental syncs.

A failure is logged and tried again at the next turn; it never stops the runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from confluent_kafka import Producer

from processors.logs import event
from processors.runtime.kafka import produce, topic
from processors.settings import Settings
from processors.sources.model import SourceAuthFailed
from processors.store import boxes, runs, source_webhooks
from processors.sync.decisions import TECHNICAL, run_id_for
from processors.sync.execute import Sources
from processors.sync.logic import TECHNICAL_APP
from processors.sync.scheduling import eligible_boxes
from processors.upkeep.clients import JiraWebhooks
from processors.upkeep.recovery import Silence, delivery, missed
from processors.upkeep.webhooks import WebhookKeeper
from schemas.topics import JIRA_EVENTS

log = logging.getLogger("boxsync.upkeep")
WEBHOOK_SYNC_SECONDS = 3600.0
FAILED_POLL_SECONDS = 600.0


class SourceUpkeep:
    def __init__(self, settings: Settings, sources: Sources, clock: Callable[[], float]) -> None:
        self._settings = settings
        self._sources = sources
        self._keeper = WebhookKeeper(settings, sources)
        self._clock = clock
        self._due: dict[str, float] = {}  # task → when it runs next
        cloud = sources.jira is not None and sources.jira.deployment == "cloud"
        self._failed = JiraWebhooks(sources.jira) if cloud and sources.jira else None

    def tick(self, conn: psycopg.Connection, producer: Producer | None = None
             ) -> list[runs.Run]:
        """Do what is due; the incremental runs queued (the runner says `queued`)."""
        now = self._clock()
        queued: list[runs.Run] = []
        if self._settings.manage_webhooks and self._is_due("webhooks", now, WEBHOOK_SYNC_SECONDS):
            self._guarded("webhook upkeep", lambda: self._sync_webhooks(conn, now))
        if (self._settings.manage_webhooks and self._failed is not None and producer is not None
                and self._is_due("failed", now, FAILED_POLL_SECONDS)):
            self._guarded("failed-webhook poll", lambda: self._poll_failed(conn, producer))
        minutes = self._settings.silence_resync_minutes
        if minutes > 0 and self._sources.jira is not None and self._is_due(
                "silence", now, max(60.0, minutes * 15.0)):
            self._guarded("silence check", lambda: queued.extend(self._silence(conn, now)))
        return queued

    def _is_due(self, task: str, now: float, every: float) -> bool:
        if now < self._due.get(task, 0.0):
            return False
        self._due[task] = now + every
        return True

    def _sync_webhooks(self, conn: psycopg.Connection, now: float) -> None:
        outcome = self._keeper.sync(conn, datetime.fromtimestamp(now, UTC))
        if outcome.registered or outcome.refreshed or outcome.removed or outcome.errors:
            event(log, logging.INFO if not outcome.errors else logging.WARNING,
                  "webhooks kept", registered=len(outcome.registered),
                  refreshed=len(outcome.refreshed), removed=len(outcome.removed),
                  errors="; ".join(f"{k}: {v}" for k, v in sorted(outcome.errors.items())))

    def _poll_failed(self, conn: psycopg.Connection, producer: Producer) -> None:
        assert self._failed is not None
        mark = f"jira_failed_after:{self._failed.site}"
        after = source_webhooks.mark(conn, mark)
        newest = int(after) if after else None
        fed = 0
        target = topic(self._settings, JIRA_EVENTS)
        try:
            for item in self._failed.failed(newest):
                raw = delivery(item, self._failed.site)
                if raw is not None:
                    produce(producer, target, raw.value, raw.key, raw.headers)
                    fed += 1
                failure_time = item.get("failureTime")
                if isinstance(failure_time, int) and (newest is None or failure_time > newest):
                    newest = failure_time
        except SourceAuthFailed:
            self._failed = None  # not an app: Jira keeps no such list for this credential
            raise
        finally:
            # The mark moves only past what the broker has: a lost record is polled again.
            if producer.flush(30) == 0 and newest is not None:
                source_webhooks.set_mark(conn, mark, str(newest))
        if fed:
            event(log, logging.INFO, "failed webhooks fed to ingest", deliveries=fed,
                  site=self._failed.site if self._failed else None)

    def _silence(self, conn: psycopg.Connection, now: float) -> list[runs.Run]:
        assert self._sources.jira is not None
        minutes = self._settings.silence_resync_minutes
        queued: list[runs.Run] = []
        for box_id in eligible_boxes(conn):
            box = boxes.get_box(conn, box_id)
            if box is None or not box.scope.jira_projects:
                continue
            resynced = source_webhooks.mark(conn, f"silence_resync:{box_id}")
            state = Silence(box_id, source_webhooks.last_written(conn, box_id),
                            self._sources.jira.newest_update(box.scope.jira_projects),
                            float(resynced) if resynced else None)
            if not missed(state, now, minutes):
                continue
            run = runs.Run(run_id_for(f"silence:{box_id}:{int(now // (minutes * 60))}", None),
                           None, None, "incremental", TECHNICAL.model_dump(mode="json"),
                           TECHNICAL_APP, False, [box_id])
            if runs.queue(conn, run, self._settings.topic_prefix):
                queued.append(run)
                event(log, logging.WARNING, "box silent while its site is active; "
                      "incremental sync queued", box_id=box_id, run_id=run.run_id)
            source_webhooks.set_mark(conn, f"silence_resync:{box_id}", repr(now))
        return queued

    @staticmethod
    def _guarded(what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:  # the runs go on; the next turn tries again
            event(log, logging.WARNING, f"{what} failed", error=f"{type(exc).__name__}: {exc}")
