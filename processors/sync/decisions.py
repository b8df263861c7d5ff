"""Sync commands, pure logic: one `SyncCommand` and what is known about its box → a `Decision`.

This is the command table of contract §4 as a function; the wiring reads the box and tenant
state, calls `decide()`, then does what the decision says (start, restart or skip a run,
record a visit, flag boxes, set the index state), publishes `statuses` and writes `audit`.
Nothing here does I/O or reads a clock: `now` (epoch seconds) is passed in.

Rules, in the order they are checked (the first that applies wins):
- `open_box`: unknown box → refused `unknown_box`; scope type `none` → refused
  `not_available_for_non_scope_box`, the visit still recorded; closed, archived or
  corrupted-scope boxes, and boxes whose full sync already runs, only record the visit (their
  data is frozen, blocked until an admin acts, or being rebuilt); a box waiting for a full sync,
  never synced, or synced more than `cache_ttl_seconds` ago runs a full sync, unless the Jira
  index is corrupted and the command lacks `force` (refused `jira_index_corrupted`, visit
  recorded); otherwise the visit only.
- `resync_box`: unknown → `unknown_box`; requester not a box admin → `forbidden`; scope `none`
  → `not_available_for_non_scope_box`; closed → `box_closed`; corrupted index without force →
  `jira_index_corrupted`; a sync already running restarts (`restart_full`); else `run_full`.
- `resync_all`: always refused `bulk_resync_not_allowed`.
- `plugin_toggled`, `plugin_updated`, `cache_cleared`: flag every own-scope box that is not
  archived as waiting for a full sync (closed ones too, so they resync if reopened); nothing
  runs.
- `scope_saved`: as `resync_box` without the admin and closed checks (the app saved the scope;
  the run is in the background, authored by the scope owner).
- `incremental_sync`: one run over the eligible boxes; the others are listed in `skipped`
  with the filter reason, which is not a refusal of the command.
- `jira_index_status`: `set_index_state` from `params.corrupted`; invalid → `invalid_command`.
- `clear_box_warnings`: unknown → `unknown_box`; not an admin → `forbidden`; else clear.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from schemas.commands import SyncCommand, SyncState, SyncStatus, SyncType
from schemas.events import Person
from schemas.reference import Box

Outcome = Literal["run_full", "restart_full", "record_visit", "flag_boxes", "refused",
                  "set_index_state", "clear_warnings", "run_incremental"]

# The author of a full sync where the box names no scope owner (behaviour.md, "Authors").
TECHNICAL = Person(kind="technical", source="app")

# The sync a command asks for; a refusal reports it so dashboards can count refused runs.
_REQUESTED_SYNC: dict[str, SyncType] = {
    "open_box": "full", "resync_box": "full", "resync_all": "full", "scope_saved": "full",
    "incremental_sync": "incremental"}


@dataclass(frozen=True)
class BoxView:
    """What the wiring knows about one box: its definition (None when unknown) and sync state."""

    box: Box | None
    waiting_full_sync: bool = False
    corrupted: bool = False
    last_full_sync_at: float | None = None  # epoch seconds; None: never synced
    running_run_id: str | None = None  # the full sync running on the box, if any


@dataclass(frozen=True)
class TenantView:
    jira_index_corrupted: bool = False
    cache_ttl_seconds: float = 24 * 3600.0


@dataclass(frozen=True)
class Decision:
    """What to do with one command. Fields that do not apply to the outcome keep defaults.

    - `statuses`: to publish now on `sync.status`, in order.
    - `audit`: one audit-log entry (who, what, box, outcome, reason, force).
    - `run_id`, `sync_type`, `author`: the run to start (`run_full`, `restart_full`,
      `run_incremental`); `cancel_run_id`: the running run to stop first (`restart_full`).
    - `record_visit`: `open_box` only; true also when the sync part was refused.
    - `forced`: a full sync runs although the Jira index is corrupted (`params.force`).
    - `flag_box_ids`: boxes to mark as waiting for a full sync (`flag_boxes`).
    - `eligible_box_ids`, `skipped` ((box id, reason), ...): `run_incremental`.
    - `index_corrupted`: the new Jira index state (`set_index_state`).
    """

    outcome: Outcome
    reason: str | None
    statuses: tuple[SyncStatus, ...]
    audit: Mapping[str, Any]
    box_id: str | None = None
    run_id: str | None = None
    sync_type: SyncType | None = None
    author: Person | None = None
    cancel_run_id: str | None = None
    record_visit: bool = False
    forced: bool = False
    flag_box_ids: tuple[str, ...] = ()
    eligible_box_ids: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    index_corrupted: bool | None = None


@dataclass(frozen=True)
class _Request:
    command: SyncCommand
    view: BoxView
    tenant: TenantView
    now: float
    all_boxes: tuple[BoxView, ...] = ()

    @property
    def box(self) -> Box | None:
        return self.view.box

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


def decide(command: SyncCommand, view: BoxView | None, tenant: TenantView, now: float,
           all_boxes: Sequence[BoxView] = ()) -> Decision:
    """Decide what `command` does. `view` is the command's box (None or `BoxView(None)` when
    unknown); `all_boxes` every known box, for the tenant-wide commands (`plugin_*`,
    `cache_cleared`, `incremental_sync`). Raises ValueError when `view` is another box."""
    view = view or BoxView(None)
    if view.box is not None and view.box.box_id != command.box_id:
        raise ValueError(f"view of box {view.box.box_id!r} for a command on {command.box_id!r}")
    request = _Request(command, view, tenant, now, tuple(all_boxes))
    return _HANDLERS[command.type](request)


def run_id_for(command_id: str, box_id: str | None) -> str:
    """The run a command starts: a hash of its id and box, so a replay maps to the same run."""
    key = json.dumps([command_id, box_id]).encode()
    return hashlib.sha256(key).hexdigest()[:32]


def full_sync_author(command: SyncCommand, box: Box) -> Person:
    """The author of a full sync's updates: the requesting user for `open_box` and
    `resync_box`; the scope owner (the technical user when there is none) for background runs
    (`scope_saved`, schedules)."""
    if command.type in ("open_box", "resync_box"):
        return command.requested_by
    return box.scope_owner or TECHNICAL


def is_admin(person: Person, box: Box) -> bool:
    """Box admins are listed by person id; a person without an id is never one."""
    return person.id is not None and person.id in box.admins


def needs_full_sync(view: BoxView, tenant: TenantView, now: float) -> bool:
    """The box waits for a full sync, was never synced, or its data outlived the cache TTL."""
    if view.waiting_full_sync or view.last_full_sync_at is None:
        return True
    return now - view.last_full_sync_at > tenant.cache_ttl_seconds


def incremental_skip_reason(view: BoxView) -> str | None:
    """Why the incremental sync leaves a box out (the filters' order), or None to sync it."""
    box = view.box
    if box is None:
        return "unknown_box"
    checks = ((box.status == "closed", "box_closed"), (box.archived, "box_archived"),
              (view.corrupted, "corrupted_scope"),
              (view.waiting_full_sync, "waiting_for_full_sync"),
              (box.scope_type == "none", "non_scope_box"))
    return next((reason for failed, reason in checks if failed), None)


# --- per command ---------------------------------------------------------------------------


def _open_box(request: _Request) -> Decision:
    box = request.box
    if box is None:
        return _refused(request, "unknown_box")
    if box.scope_type == "none":
        return _refused(request, "not_available_for_non_scope_box", record_visit=True)
    view = request.view
    frozen = box.status == "closed" or box.archived or view.corrupted
    if frozen or view.running_run_id or not needs_full_sync(view, request.tenant, request.now):
        return _visit(request)
    return _index_gate(request, record_visit=True) or _full(request, record_visit=True)


def _admin_refusal(request: _Request) -> Decision | None:
    """Refused when the box is unknown or the requester is not one of its admins."""
    if request.box is None:
        return _refused(request, "unknown_box")
    if not is_admin(request.command.requested_by, request.box):
        return _refused(request, "forbidden")
    return None


def _resync_box(request: _Request) -> Decision:
    refusal = _admin_refusal(request)
    if refusal is not None:
        return refusal
    box = request.box
    assert box is not None
    if box.scope_type == "none":
        return _refused(request, "not_available_for_non_scope_box")
    if box.status == "closed":
        return _refused(request, "box_closed")
    return _index_gate(request) or _full(request)


def _scope_saved(request: _Request) -> Decision:
    box = request.box
    if box is None:
        return _refused(request, "unknown_box")
    if box.scope_type == "none":
        return _refused(request, "not_available_for_non_scope_box")
    return _index_gate(request) or _full(request)


def _resync_all(request: _Request) -> Decision:
    return _refused(request, "bulk_resync_not_allowed")


def _flag_all(request: _Request) -> Decision:
    ids = tuple(sorted({view.box.box_id for view in request.all_boxes if view.box is not None
                        and view.box.scope_type == "own" and not view.box.archived}))
    statuses = tuple(_status(request, "flagged", box_id=box_id) for box_id in ids)
    # Every command ends in a status: with no box to flag, a tenant-wide `completed`.
    return _decision(request, "flag_boxes", statuses or (_status(request, "completed"),),
                     flag_box_ids=ids)


def _incremental(request: _Request) -> Decision:
    eligible: list[str] = []
    skipped: list[tuple[str, str]] = []
    for view in sorted(_known(request.all_boxes), key=_box_id):
        reason = incremental_skip_reason(view)
        if reason is None:
            eligible.append(_box_id(view))
        else:
            skipped.append((_box_id(view), reason))
    run_id = run_id_for(request.command.command_id, None)
    queued = _status(request, "queued", run_id=run_id, sync_type="incremental",
                     total=len(eligible))
    return _decision(request, "run_incremental", (queued,), run_id=run_id,
                     sync_type="incremental", eligible_box_ids=tuple(eligible),
                     skipped=tuple(skipped))


def _index_status(request: _Request) -> Decision:
    corrupted = request.command.corrupted
    if corrupted is None:
        return _refused(request, "invalid_command")
    return _decision(request, "set_index_state", (_status(request, "completed"),),
                     index_corrupted=corrupted)


def _clear_warnings(request: _Request) -> Decision:
    return _admin_refusal(request) or _decision(request, "clear_warnings",
                                                (_status(request, "completed"),))


_HANDLERS: dict[str, Callable[[_Request], Decision]] = {
    "open_box": _open_box, "resync_box": _resync_box, "resync_all": _resync_all,
    "plugin_toggled": _flag_all, "plugin_updated": _flag_all, "cache_cleared": _flag_all,
    "scope_saved": _scope_saved, "incremental_sync": _incremental,
    "jira_index_status": _index_status, "clear_box_warnings": _clear_warnings}


# --- building blocks -----------------------------------------------------------------------


def _index_gate(request: _Request, *, record_visit: bool = False) -> Decision | None:
    """A refusal when the Jira index is reported corrupted and the command lacks `force`."""
    if request.tenant.jira_index_corrupted and not request.command.force:
        return _refused(request, "jira_index_corrupted", record_visit=record_visit)
    return None


def _full(request: _Request, *, record_visit: bool = False) -> Decision:
    """Start a full sync of the command's box, restarting the one that runs, if any."""
    box = request.box
    assert box is not None  # the callers checked it
    running = request.view.running_run_id
    run_id = run_id_for(request.command.command_id, box.box_id)
    queued = _status(request, "queued", run_id=run_id, sync_type="full")
    return _decision(request, "restart_full" if running else "run_full", (queued,),
                     run_id=run_id, sync_type="full", cancel_run_id=running,
                     author=full_sync_author(request.command, box), record_visit=record_visit,
                     forced=request.tenant.jira_index_corrupted)


def _visit(request: _Request) -> Decision:
    return _decision(request, "record_visit", (_status(request, "completed"),),
                     record_visit=True)


def _refused(request: _Request, reason: str, *, record_visit: bool = False) -> Decision:
    sync_type = _REQUESTED_SYNC.get(request.command.type)
    status = _status(request, "refused", reason=reason, sync_type=sync_type)
    return _decision(request, "refused", (status,), reason=reason, record_visit=record_visit)


def _status(request: _Request, state: SyncState, **fields: Any) -> SyncStatus:
    command = request.command
    fields.setdefault("box_id", command.box_id)
    return SyncStatus(command_id=command.command_id, state=state,
                      requested_by=command.requested_by, at=request.at, **fields)


def _decision(request: _Request, outcome: Outcome, statuses: tuple[SyncStatus, ...],
              reason: str | None = None, **fields: Any) -> Decision:
    command = request.command
    requester = command.requested_by
    audit = {"command_id": command.command_id, "who": requester.id or requester.kind,
             "what": command.type, "box_id": command.box_id, "outcome": outcome,
             "reason": reason, "force": command.force,
             "forced_past_corrupted_index": bool(fields.get("forced"))}
    return Decision(outcome=outcome, reason=reason, statuses=statuses, audit=audit,
                    box_id=command.box_id, **fields)


def _known(views: Sequence[BoxView]) -> list[BoxView]:
    return [view for view in views if view.box is not None]


def _box_id(view: BoxView) -> str:
    assert view.box is not None
    return view.box.box_id
