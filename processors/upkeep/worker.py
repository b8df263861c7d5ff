"""The source upkeep a worker's sync process does between runs (issue 18): with
BOXSYNC_MANAGE_WEBHOOKS=true, `webhooks sync` at start and then hourly. A failure is logged
and tried again at the next turn; it never stops the runs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from processors.logs import event
from processors.settings import Settings
from processors.sync.execute import Sources
from processors.upkeep.webhooks import WebhookKeeper

log = logging.getLogger("boxsync.upkeep")
WEBHOOK_SYNC_SECONDS = 3600.0


class SourceUpkeep:
    def __init__(self, settings: Settings, sources: Sources, clock: Callable[[], float]) -> None:
        self._settings = settings
        self._keeper = WebhookKeeper(settings, sources)
        self._clock = clock
        self._webhooks_at: float | None = None

    def tick(self, conn: psycopg.Connection) -> None:
        now = self._clock()
        if self._settings.manage_webhooks and (
                self._webhooks_at is None or now - self._webhooks_at >= WEBHOOK_SYNC_SECONDS):
            self._webhooks_at = now
            self._sync_webhooks(conn, now)

    def _sync_webhooks(self, conn: psycopg.Connection, now: float) -> None:
        try:
            outcome = self._keeper.sync(conn, datetime.fromtimestamp(now, UTC))
        except Exception as exc:  # the runs go on; the next turn tries again
            event(log, logging.WARNING, "webhook upkeep failed",
                  error=f"{type(exc).__name__}: {exc}")
            return
        if outcome.registered or outcome.refreshed or outcome.removed or outcome.errors:
            event(log, logging.INFO if not outcome.errors else logging.WARNING,
                  "webhooks kept", registered=len(outcome.registered),
                  refreshed=len(outcome.refreshed), removed=len(outcome.removed),
                  errors="; ".join(f"{k}: {v}" for k, v in sorted(outcome.errors.items())))
