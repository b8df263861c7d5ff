"""Runs a command decided to start, queued for the sync runner (`sync_runs`).

A full sync supersedes the box's other queued full syncs and asks its running one to stop
(a second `scope_saved` restarts the run); the run id is derived from the command, so a
replayed command queues nothing twice.
"""

from __future__ import annotations

import psycopg

from processors.store import runs
from processors.sync.decisions import Decision
from processors.sync.logic import TECHNICAL_APP
from schemas.commands import SyncCommand


def queue_sync_run(conn: psycopg.Connection, command: SyncCommand, decision: Decision,
                   tenant: str) -> str:
    """Queue the run of a decision for the runners of `tenant` (the topic prefix), `pending`
    until the caller releases it (processors.store.runs.release); returns its id."""
    assert decision.run_id is not None and decision.sync_type is not None
    requester = command.requested_by.model_dump(mode="json")
    if decision.outcome == "run_incremental":
        runs.queue(conn, runs.Run(decision.run_id, command.command_id, None, "incremental",
                                  requester, TECHNICAL_APP, False,
                                  list(decision.eligible_box_ids)), tenant, "pending")
        return decision.run_id
    assert command.box_id is not None
    author = decision.author.model_dump(mode="json") if decision.author else TECHNICAL_APP
    runs.queue(conn, runs.Run(decision.run_id, command.command_id, command.box_id, "full",
                              requester, author, decision.forced, []), tenant, "pending")
    runs.supersede(conn, command.box_id, decision.run_id)
    return decision.run_id
