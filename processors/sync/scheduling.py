"""The nightly incremental sync, queued (wiring around processors.sync.schedule).

Checked every `CHECK_SECONDS` by each runner; under an advisory lock, the night is recorded
in `tenant_state` in the same transaction that queues its run, so a night runs once, also
across restarts, several workers and daylight-saving changes.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import psycopg

from processors.boxes.commands import as_view
from processors.settings import Settings
from processors.store import boxes, runs
from processors.sync.decisions import TECHNICAL, incremental_skip_reason, run_id_for
from processors.sync.logic import TECHNICAL_APP
from processors.sync.schedule import due

LAST_NIGHT = "incremental_last_night:"  # + the tenant
CHECK_SECONDS = 30.0
_LOCK_KEY = 0x626F7874  # "boxt"


class NightlySchedule:
    def __init__(self, settings: Settings) -> None:
        self._tenant = settings.tenant
        self._prefix = settings.topic_prefix
        self._zone = settings.tenant_timezone
        self._checked = -math.inf

    def maybe_queue(self, conn: psycopg.Connection, now: float) -> runs.Run | None:
        """Queue tonight's incremental run when it is due and not yet queued."""
        if now - self._checked < CHECK_SECONDS:
            return None
        self._checked = now
        with conn.transaction():
            boxes.lock_for_transaction(conn, _LOCK_KEY)
            recorded = boxes.tenant_value(conn, LAST_NIGHT + self._tenant)
            last = date.fromisoformat(recorded) if isinstance(recorded, str) else None
            night = due(self._tenant, self._zone, datetime.fromtimestamp(now, UTC), last)
            if night is None:
                return None
            boxes.set_tenant_value(conn, LAST_NIGHT + self._tenant, night.isoformat())
            run = runs.Run(run_id_for(f"schedule:{self._tenant}:{night}", None), None, None,
                           "incremental", TECHNICAL.model_dump(mode="json"), TECHNICAL_APP,
                           False, eligible_boxes(conn))
            runs.queue(conn, run, self._prefix)
        return run


def eligible_boxes(conn: psycopg.Connection) -> list[str]:
    """Boxes an incremental sync covers: not closed, archived, corrupted, waiting, or none."""
    views = [as_view(row) for row in boxes.box_views(conn)]
    return [view.box.box_id for view in views
            if view.box is not None and incremental_skip_reason(view) is None]
