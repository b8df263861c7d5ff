"""Commands on `sync.commands`, applied: read the box and tenant state from PostgreSQL, let the
pure command table (processors.sync.decisions) decide, do what it says, audit it.

Handled once per `command_id`: the audit log (`command_log`) keeps each command with the
record it came from and the statuses it produced. The same record read again after a crash
publishes those statuses again (its first Kafka transaction never committed); another record
with the same id is a duplicate delivery, counted and ignored. A command that does not
validate but names its id is refused `invalid_command` (every command ends in a status);
one without an id is dead-lettered by the stage.

Runs (`run_full`, `restart_full`, `run_incremental`) are queued for the sync runner through
`RunQueue` (processors.sync.queueing), in the same database transaction, `pending` until the
batch's Kafka transaction (with the `queued` status) has committed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
from pydantic import ValidationError

from processors.boxes.logic import sync_status
from processors.metrics import Metrics
from processors.runtime.origins import same_record
from processors.settings import Settings
from processors.store import boxes, runs
from processors.sync.decisions import BoxView, Decision, TenantView, decide
from schemas.commands import SyncCommand

INDEX_STATE = "jira_index_corrupted:"  # + the tenant (topic prefix)
# Queues a decided run `pending` and returns its id (processors.sync.queueing).
RunQueue = Callable[[psycopg.Connection, SyncCommand, Decision], str]


class CommandHandler:
    def __init__(self, settings: Settings, metrics: Metrics, queue_run: RunQueue) -> None:
        self._tenant_ttl = settings.cache_ttl_hours * 3600.0
        self._index_state = INDEX_STATE + settings.topic_prefix
        self._metrics = metrics
        self._queue_run = queue_run
        self._counts: Counter[tuple[str, str]] = Counter()
        self.pending_runs: list[str] = []  # queued in this batch; released after its commit

    def handle(self, conn: psycopg.Connection, value: dict[str, Any], origin: str, now: float,
               at: str) -> list[dict[str, Any]]:
        """The statuses to publish for one command record."""
        try:
            command = SyncCommand.model_validate(value)
        except ValidationError as exc:
            return self._invalid(conn, value, origin, exc, at)
        seen = boxes.logged_command(conn, command.command_id)
        if seen is not None:
            if same_record(seen[0], origin):
                return seen[1]
            self._counts[(command.type, "duplicate")] += 1
            return []
        decision = decide(command, self._view(conn, command.box_id), self._tenant(conn), now,
                          self._all_views(conn) if command.box_id is None else ())
        self._apply(conn, command, decision, now)
        statuses = [status.model_dump(mode="json") for status in decision.statuses]
        boxes.log_command(conn, boxes.CommandRecord(
            command.command_id, command.type, command.box_id,
            command.requested_by.model_dump(mode="json"), command.requested_at,
            decision.outcome, decision.reason, command.force, statuses, origin))
        self._counts[(command.type, decision.outcome)] += 1
        return statuses

    def committed(self, conn: psycopg.Connection) -> None:
        """The batch's statuses are on Kafka: its runs may start."""
        if self.pending_runs:
            runs.release(conn, self.pending_runs)
            self.pending_runs.clear()
        for (kind, outcome), count in self._counts.items():
            self._metrics.commands.labels(kind, outcome).inc(count)
        self._counts.clear()

    def reset(self) -> None:
        self._counts.clear()
        self.pending_runs.clear()

    def _apply(self, conn: psycopg.Connection, command: SyncCommand, decision: Decision,
               now: float) -> None:
        moment = datetime.fromtimestamp(now, tz=UTC)
        if decision.record_visit and command.box_id is not None:
            boxes.record_visit(conn, command.box_id, moment)
        if decision.outcome == "clear_warnings" and command.box_id is not None:
            boxes.clear_warnings(conn, command.box_id, command.requested_by.id)
        elif decision.outcome == "flag_boxes":
            boxes.flag_waiting(conn, list(decision.flag_box_ids))
        elif decision.outcome == "set_index_state":
            boxes.set_tenant_value(conn, self._index_state, bool(decision.index_corrupted))
        elif decision.outcome in ("run_full", "restart_full", "run_incremental"):
            self.pending_runs.append(self._queue_run(conn, command, decision))

    def _invalid(self, conn: psycopg.Connection, value: dict[str, Any], origin: str,
                 exc: ValidationError, at: str) -> list[dict[str, Any]]:
        command_id = value.get("command_id")
        first = exc.errors()[0]
        problem = f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
        if not isinstance(command_id, str) or not command_id.strip():
            raise ValueError(f"not a SyncCommand ({problem})")
        seen = boxes.logged_command(conn, command_id)
        if seen is not None:
            return seen[1] if same_record(seen[0], origin) else []
        box_id = value.get("box_id") if isinstance(value.get("box_id"), str) else None
        status = sync_status(box_id, "refused", at, reason="invalid_command",
                             command_id=command_id)
        kind = str(value.get("type"))[:40]
        boxes.log_command(conn, boxes.CommandRecord(
            command_id, kind, box_id, None, None, "refused", "invalid_command", False,
            [status], origin))
        self._counts[("invalid", "refused")] += 1
        return [status]

    def _view(self, conn: psycopg.Connection, box_id: str | None) -> BoxView | None:
        if box_id is None:
            return None
        found = boxes.box_views(conn, box_id)
        if not found:
            return BoxView(None)
        view = as_view(found[0])
        return replace(view, running_run_id=runs.running_run(conn, box_id))

    def _all_views(self, conn: psycopg.Connection) -> list[BoxView]:
        return [as_view(row) for row in boxes.box_views(conn)]

    def _tenant(self, conn: psycopg.Connection) -> TenantView:
        corrupted = boxes.tenant_value(conn, self._index_state)
        return TenantView(jira_index_corrupted=bool(corrupted),
                          cache_ttl_seconds=self._tenant_ttl)


def as_view(row: tuple[Any, bool, bool, datetime | None]) -> BoxView:
    box, waiting, corrupted, last_full = row
    return BoxView(box, waiting_full_sync=waiting, corrupted=corrupted,
                   last_full_sync_at=last_full.timestamp() if last_full else None)
