"""The command table of contract §4 as a pure function: command × box state × requester."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from processors.sync.decisions import (
    TECHNICAL,
    BoxView,
    Decision,
    TenantView,
    decide,
    full_sync_author,
    incremental_skip_reason,
    needs_full_sync,
    run_id_for,
)
from schemas.commands import REFUSAL_REASONS, SyncCommand
from schemas.events import Person
from schemas.reference import Box

NOW = datetime(2026, 3, 29, 10, tzinfo=UTC).timestamp()
HOUR = 3600.0
TENANT = TenantView(jira_index_corrupted=False, cache_ttl_seconds=24 * HOUR)
CORRUPTED_INDEX = TenantView(jira_index_corrupted=True, cache_ttl_seconds=24 * HOUR)

ADMIN = Person(kind="user", id="557058:admin", name="Ada", source="jira")
USER = Person(kind="user", id="557058:bob", name="Bob", source="jira")
OWNER = Person(kind="scope_owner", id="557058:owner", name="Owner", source="jira")
TECH = Person(kind="technical", source="app")
REQUESTERS = {"admin": ADMIN, "user": USER, "owner": OWNER, "technical": TECH}


def make_box(box_id: str = "B1", **overrides: Any) -> Box:
    value: dict[str, Any] = {
        "box_id": box_id, "name": "Plan", "box_type": "program", "scope_type": "own",
        "status": "in_progress", "scope": {"jira_projects": ["OPS"]},
        "scope_owner": OWNER.model_dump(), "admins": [ADMIN.id]}
    value.update(overrides)
    return Box.model_validate(value)


def view(state: str, box_id: str = "B1") -> BoxView:
    """A box in one of the states of the table. Unless the state says otherwise the box was
    last synced a day and an hour ago (stale), so a rule that stops a sync is really tested."""
    stale = BoxView(make_box(box_id), last_full_sync_at=NOW - 25 * HOUR)
    states: dict[str, BoxView] = {
        "unknown": BoxView(None),
        "none_scope": replace(stale, box=make_box(box_id, scope_type="none",
                                                  box_type="portfolio")),
        "sub_scope": replace(stale, box=make_box(box_id, scope_type="sub", parent_box_id="P")),
        "closed": replace(stale, box=make_box(box_id, status="closed")),
        "archived": replace(stale, box=make_box(box_id, archived=True)),
        "corrupted": replace(stale, corrupted=True),
        "waiting": replace(stale, waiting_full_sync=True, last_full_sync_at=NOW - HOUR),
        "never": replace(stale, last_full_sync_at=None),
        "fresh": replace(stale, last_full_sync_at=NOW - HOUR),
        "stale": stale,
        "running": replace(stale, running_run_id="run-old"),
    }
    return states[state]


def command(kind: str, requester: Person = ADMIN, box_id: str | None = "B1",
            command_id: str = "c-1", **params: Any) -> SyncCommand:
    return SyncCommand(command_id=command_id, type=kind, box_id=box_id,
                       requested_by=requester, requested_at=datetime(2026, 3, 29, 10, tzinfo=UTC),
                       params=params)


def run(kind: str, state: str, requester: Person = ADMIN, tenant: TenantView = TENANT,
        **params: Any) -> Decision:
    return decide(command(kind, requester, **params), view(state), tenant, NOW)


STATES = ("unknown", "none_scope", "closed", "archived", "corrupted", "waiting", "never",
          "fresh", "stale", "running")

# (command, state) -> (outcome, reason) for a box admin, with a healthy Jira index.
ADMIN_TABLE: dict[tuple[str, str], tuple[str, str | None]] = {
    ("open_box", "unknown"): ("refused", "unknown_box"),
    ("open_box", "none_scope"): ("refused", "not_available_for_non_scope_box"),
    ("open_box", "closed"): ("record_visit", None),
    ("open_box", "archived"): ("record_visit", None),
    ("open_box", "corrupted"): ("record_visit", None),
    ("open_box", "waiting"): ("run_full", None),
    ("open_box", "never"): ("run_full", None),
    ("open_box", "fresh"): ("record_visit", None),
    ("open_box", "stale"): ("run_full", None),
    ("open_box", "running"): ("record_visit", None),
    ("resync_box", "unknown"): ("refused", "unknown_box"),
    ("resync_box", "none_scope"): ("refused", "not_available_for_non_scope_box"),
    ("resync_box", "closed"): ("refused", "box_closed"),
    ("resync_box", "archived"): ("run_full", None),
    ("resync_box", "corrupted"): ("run_full", None),
    ("resync_box", "waiting"): ("run_full", None),
    ("resync_box", "never"): ("run_full", None),
    ("resync_box", "fresh"): ("run_full", None),
    ("resync_box", "stale"): ("run_full", None),
    ("resync_box", "running"): ("restart_full", None),
    ("scope_saved", "unknown"): ("refused", "unknown_box"),
    ("scope_saved", "none_scope"): ("refused", "not_available_for_non_scope_box"),
    ("scope_saved", "closed"): ("run_full", None),
    ("scope_saved", "archived"): ("run_full", None),
    ("scope_saved", "corrupted"): ("run_full", None),
    ("scope_saved", "waiting"): ("run_full", None),
    ("scope_saved", "never"): ("run_full", None),
    ("scope_saved", "fresh"): ("run_full", None),
    ("scope_saved", "stale"): ("run_full", None),
    ("scope_saved", "running"): ("restart_full", None),
    **{("clear_box_warnings", state): ("clear_warnings", None) for state in STATES},
    ("clear_box_warnings", "unknown"): ("refused", "unknown_box"),
    **{("resync_all", state): ("refused", "bulk_resync_not_allowed") for state in STATES},
}
ADMIN_ONLY = ("resync_box", "clear_box_warnings")


def expected(kind: str, state: str, requester: str) -> tuple[str, str | None]:
    """Non-admins get what admins get, except `forbidden` for the admin-only commands on a
    known box (the admin check comes right after the box lookup)."""
    if requester != "admin" and kind in ADMIN_ONLY and state != "unknown":
        return "refused", "forbidden"
    return ADMIN_TABLE[kind, state]


CASES = [(kind, state, requester) for kind, state in ADMIN_TABLE for requester in REQUESTERS]


@pytest.mark.parametrize(("kind", "state", "requester"), CASES)
def test_command_table(kind: str, state: str, requester: str) -> None:
    decision = run(kind, state, REQUESTERS[requester])
    assert (decision.outcome, decision.reason) == expected(kind, state, requester)
    assert decision.statuses, "every command ends in at least one status"
    assert all(s.reason is None or s.reason in REFUSAL_REASONS for s in decision.statuses)
    assert decision.audit["what"] == kind and decision.audit["outcome"] == decision.outcome


def test_open_box_records_the_visit_whatever_it_decides_about_a_known_box() -> None:
    for state in STATES:
        assert run("open_box", state).record_visit is (state != "unknown"), state
    assert not run("resync_box", "fresh").record_visit


def test_a_visit_only_is_a_completed_status_without_a_run() -> None:
    decision = run("open_box", "fresh", USER)
    (status,) = decision.statuses
    assert (status.state, status.sync_type, status.run_id, status.box_id) == (
        "completed", None, None, "B1")
    assert decision.run_id is None and decision.author is None


def test_a_refusal_is_one_refused_status_with_its_reason() -> None:
    decision = run("resync_box", "closed")
    (status,) = decision.statuses
    assert (status.state, status.reason, status.sync_type, status.box_id) == (
        "refused", "box_closed", "full", "B1")
    assert status.requested_by == ADMIN and status.command_id == "c-1"
    assert status.at == datetime(2026, 3, 29, 10, tzinfo=UTC)
    assert decision.run_id is None


def test_a_full_sync_is_queued_with_its_run_and_author() -> None:
    decision = run("resync_box", "stale")
    (status,) = decision.statuses
    assert (status.state, status.sync_type, status.run_id, status.read_only) == (
        "queued", "full", decision.run_id, False)
    assert decision.run_id == run_id_for("c-1", "B1") and decision.sync_type == "full"
    assert decision.author == ADMIN and decision.cancel_run_id is None


def test_a_running_sync_restarts_under_a_new_run() -> None:
    decision = run("resync_box", "running")
    assert decision.cancel_run_id == "run-old"
    assert decision.run_id not in (None, "run-old")
    assert decision.statuses[0].state == "queued"


def test_the_cache_ttl_boundary() -> None:
    at_ttl = replace(view("fresh"), last_full_sync_at=NOW - 24 * HOUR)
    assert not needs_full_sync(at_ttl, TENANT, NOW)
    assert needs_full_sync(replace(at_ttl, last_full_sync_at=NOW - 24 * HOUR - 1), TENANT, NOW)
    short_ttl = TenantView(cache_ttl_seconds=HOUR / 2)
    assert decide(command("open_box"), view("fresh"), short_ttl, NOW).outcome == "run_full"


# --- the Jira index --------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "state", "record_visit"), [
    ("open_box", "waiting", True), ("open_box", "never", True), ("open_box", "stale", True),
    ("resync_box", "fresh", False), ("resync_box", "running", False),
    ("scope_saved", "fresh", False), ("scope_saved", "running", False)])
def test_a_corrupted_index_refuses_full_syncs(kind: str, state: str,
                                              record_visit: bool) -> None:
    decision = run(kind, state, tenant=CORRUPTED_INDEX)
    assert (decision.outcome, decision.reason) == ("refused", "jira_index_corrupted")
    assert decision.record_visit is record_visit and decision.run_id is None
    assert decision.statuses[0].reason == "jira_index_corrupted"


@pytest.mark.parametrize(("kind", "state", "outcome"), [
    ("open_box", "waiting", "run_full"), ("resync_box", "fresh", "run_full"),
    ("resync_box", "running", "restart_full"), ("scope_saved", "stale", "run_full")])
@pytest.mark.parametrize("force", [True, "true"])
def test_force_runs_despite_a_corrupted_index_and_is_audited(
        kind: str, state: str, outcome: str, force: object) -> None:
    decision = run(kind, state, tenant=CORRUPTED_INDEX, force=force)
    assert decision.outcome == outcome and decision.forced
    assert decision.audit["force"] is True and decision.audit["forced_past_corrupted_index"]


def test_force_on_a_healthy_index_is_audited_but_forces_nothing() -> None:
    decision = run("resync_box", "fresh", force=True)
    assert decision.outcome == "run_full" and not decision.forced
    assert decision.audit["force"] is True
    assert decision.audit["forced_past_corrupted_index"] is False


def test_a_corrupted_index_does_not_stop_a_visit_or_hide_other_refusals() -> None:
    assert run("open_box", "fresh", tenant=CORRUPTED_INDEX).outcome == "record_visit"
    assert run("resync_box", "fresh", USER, tenant=CORRUPTED_INDEX).reason == "forbidden"
    assert run("resync_box", "closed", tenant=CORRUPTED_INDEX).reason == "box_closed"
    assert run("open_box", "none_scope", tenant=CORRUPTED_INDEX).reason == \
        "not_available_for_non_scope_box"


@pytest.mark.parametrize(("params", "corrupted"), [
    ({"corrupted": True}, True), ({"corrupted": "false"}, False)])
def test_jira_index_status_sets_the_state(params: dict[str, Any], corrupted: bool) -> None:
    decision = decide(command("jira_index_status", TECH, None, **params), None, TENANT, NOW)
    assert (decision.outcome, decision.index_corrupted) == ("set_index_state", corrupted)
    (status,) = decision.statuses
    assert (status.state, status.box_id, status.sync_type) == ("completed", None, None)


@pytest.mark.parametrize("params", [{}, {"corrupted": "maybe"}, {"corrupted": 1}])
def test_an_invalid_index_status_is_refused(params: dict[str, Any]) -> None:
    decision = decide(command("jira_index_status", TECH, None, **params), None, TENANT, NOW)
    assert (decision.outcome, decision.reason) == ("refused", "invalid_command")
    assert decision.index_corrupted is None and decision.statuses[0].state == "refused"


# --- authors ---------------------------------------------------------------------------------


def test_the_author_of_a_full_sync() -> None:
    assert run("open_box", "stale", USER).author == USER
    assert run("resync_box", "stale", ADMIN).author == ADMIN
    assert run("scope_saved", "stale", USER).author == OWNER
    ownerless = make_box(scope_owner=None)
    assert full_sync_author(command("scope_saved"), ownerless) == TECHNICAL
    assert full_sync_author(command("incremental_sync", TECH, None), make_box()) == OWNER


# --- tenant-wide commands ----------------------------------------------------------------------


def fleet() -> list[BoxView]:
    return [view("fresh", "B-own"), view("stale", "A-own"), view("never", "C-never"),
            view("running", "D-running"), view("waiting", "E-waiting"),
            view("closed", "F-closed"), view("archived", "G-archived"),
            view("corrupted", "H-corrupted"), view("none_scope", "I-portfolio"),
            view("sub_scope", "J-sub"), BoxView(None),
            BoxView(make_box("K-both", status="closed", archived=True))]


@pytest.mark.parametrize("kind", ["plugin_toggled", "plugin_updated", "cache_cleared"])
def test_plugin_and_cache_commands_flag_every_own_scope_box_not_archived(kind: str) -> None:
    decision = decide(command(kind, TECH, None), None, TENANT, NOW, fleet())
    own = ("A-own", "B-own", "C-never", "D-running", "E-waiting", "F-closed", "H-corrupted")
    assert decision.outcome == "flag_boxes" and decision.flag_box_ids == own
    assert [(s.state, s.box_id) for s in decision.statuses] == [("flagged", b) for b in own]
    assert decision.run_id is None and decision.reason is None


def test_flagging_no_box_still_ends_in_a_status() -> None:
    decision = decide(command("cache_cleared", TECH, None), None, TENANT, NOW, [])
    assert decision.flag_box_ids == ()
    assert [(s.state, s.box_id) for s in decision.statuses] == [("completed", None)]


def test_incremental_sync_runs_over_eligible_boxes_and_reports_the_others() -> None:
    decision = decide(command("incremental_sync", TECH, None), None, TENANT, NOW, fleet())
    assert (decision.outcome, decision.reason) == ("run_incremental", None)
    assert decision.eligible_box_ids == ("A-own", "B-own", "C-never", "D-running", "J-sub")
    assert decision.skipped == (
        ("E-waiting", "waiting_for_full_sync"), ("F-closed", "box_closed"),
        ("G-archived", "box_archived"), ("H-corrupted", "corrupted_scope"),
        ("I-portfolio", "non_scope_box"), ("K-both", "box_closed"))
    (status,) = decision.statuses
    assert (status.state, status.box_id, status.sync_type, status.total) == (
        "queued", None, "incremental", 5)
    assert decision.run_id == status.run_id == run_id_for("c-1", None)


def test_incremental_sync_is_not_stopped_by_a_corrupted_index() -> None:
    decision = decide(command("incremental_sync", TECH, None), None, CORRUPTED_INDEX, NOW,
                      fleet())
    assert decision.outcome == "run_incremental"


def test_incremental_skip_reason_of_an_unknown_box() -> None:
    assert incremental_skip_reason(BoxView(None)) == "unknown_box"


def test_resync_all_is_refused_tenant_wide() -> None:
    decision = decide(command("resync_all", ADMIN, None), None, TENANT, NOW, fleet())
    (status,) = decision.statuses
    assert (status.state, status.reason, status.box_id) == (
        "refused", "bulk_resync_not_allowed", None)


# --- determinism ---------------------------------------------------------------------------


def test_a_replayed_command_decides_the_same_run() -> None:
    first, again = run("resync_box", "stale"), run("resync_box", "stale")
    assert first == again and first.run_id == run_id_for("c-1", "B1")


def test_run_ids_differ_by_command_and_box() -> None:
    ids = {run_id_for("c-1", "B1"), run_id_for("c-2", "B1"), run_id_for("c-1", "B2"),
           run_id_for("c-1", None), run_id_for("c-1B", "1"), run_id_for("c", "-1B1")}
    assert len(ids) == 6 and all(len(i) == 32 for i in ids)


def test_a_view_of_another_box_is_a_wiring_error() -> None:
    with pytest.raises(ValueError, match="B2"):
        decide(command("resync_box"), view("fresh", "B2"), TENANT, NOW)


def test_a_command_without_box_on_a_box_command_is_unknown() -> None:
    decision = decide(command("open_box", USER, None), None, TENANT, NOW)
    assert (decision.outcome, decision.reason) == ("refused", "unknown_box")
    assert decision.statuses[0].box_id is None
