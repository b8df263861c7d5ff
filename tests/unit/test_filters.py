"""The filters (behaviour.md "Filters", "Permissions", "Authors"): scope membership, box state,
routing with `left_box_ids`, and the permission rule with the last permitted author."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.collapse.logic import Change, PartitionWindows, TaskMemory
from processors.filters.logic import BoxFlags, Directory, permitted
from schemas.reference import Box

TASK = "jira:acme.atlassian.net:10001"
CARD = "trello:5f1a2b3c4d5e6f7a8b9c0d1e"
OWNER = {"kind": "user", "id": "owner-1", "name": "Olga", "source": "jira"}


def box(box_id: str, *, scope_type: str = "own", projects: tuple[str, ...] = ("OPS",),
        boards: tuple[str, ...] = (), labels: tuple[str, ...] = (),
        manual: tuple[str, ...] = (), parent: str | None = None, status: str = "in_progress",
        archived: bool = False) -> Box:
    return Box.model_validate({
        "box_id": box_id, "name": box_id.title(), "box_type": "program",
        "scope_type": scope_type, "parent_box_id": parent, "status": status,
        "archived": archived, "manual_tasks": list(manual), "scope_owner": OWNER,
        "scope": {"jira_projects": list(projects), "trello_boards": list(boards),
                  "labels_all": list(labels)}})


def directory(*boxes: Box, flags: dict[str, BoxFlags] | None = None) -> Directory:
    return Directory({b.box_id: b for b in boxes}, flags or {})


def held(d: Directory, task: str = TASK, project: str | None = "OPS",
         labels: tuple[str, ...] = ()) -> list[str]:
    return [b.box_id for b in d.members(task, project, labels)[0]]


# --------------------------------------------------------------------------------------------
# Scope membership
# --------------------------------------------------------------------------------------------

def test_own_scope_holds_tasks_of_its_projects() -> None:
    d = directory(box("ops"), box("web", projects=("WEB",)))
    assert held(d) == ["ops"]
    assert held(d, project="WEB") == ["web"]
    assert held(d, project="HR") == []


def test_own_scope_holds_cards_of_its_trello_boards_with_or_without_prefix() -> None:
    d = directory(box("plain", projects=(), boards=("b1",)),
                  box("prefixed", projects=(), boards=("trello:b1",)))
    assert held(d, CARD, "trello:b1") == ["plain", "prefixed"]
    assert held(d, CARD, "trello:b2") == []


def test_labels_all_narrows_the_scope_to_tasks_with_every_label() -> None:
    d = directory(box("q3", labels=("q3", "backend")))
    assert held(d, labels=("q3", "backend", "extra")) == ["q3"]
    assert held(d, labels=("q3",)) == []


def test_manual_tasks_are_held_whatever_their_project() -> None:
    d = directory(box("pick", projects=("WEB",), manual=(TASK,)))
    assert held(d, project="OPS") == ["pick"]


def test_sub_scope_holds_only_tasks_of_its_nearest_own_ancestor() -> None:
    program = box("program", projects=("OPS", "WEB"))
    sprint = box("sprint", scope_type="sub", projects=(), labels=("sprint-7",),
                 parent="program")
    d = directory(program, sprint)
    assert held(d, labels=("sprint-7",)) == ["program", "sprint"]
    assert held(d, labels=()) == ["program"]
    assert held(d, project="HR", labels=("sprint-7",)) == []  # not in the ancestor


def test_sub_scope_under_a_sub_scope_uses_the_nearest_own_ancestor() -> None:
    d = directory(box("program"), box("team", scope_type="sub", projects=(), parent="program"),
                  box("sprint", scope_type="sub", projects=(), parent="team"))
    assert held(d) == ["program", "sprint", "team"]


def test_sub_scope_manual_tasks_must_be_in_the_ancestor_too() -> None:
    d = directory(box("program", projects=("WEB",)),
                  box("sprint", scope_type="sub", projects=("NONE",), manual=(TASK,),
                      parent="program"))
    assert held(d) == []
    d = directory(box("program"), box("sprint", scope_type="sub", projects=("NONE",),
                                      manual=(TASK,), parent="program"))
    assert held(d) == ["program", "sprint"]


def test_sub_scope_without_an_own_ancestor_holds_nothing_even_in_a_loop() -> None:
    d = directory(box("a", scope_type="sub", projects=(), parent="b"),
                  box("b", scope_type="sub", projects=(), parent="a"))
    assert held(d) == []


def test_none_scope_boxes_hold_nothing() -> None:
    d = directory(box("portfolio", scope_type="none"))
    assert held(d) == []
    routing = d.route(TASK, "OPS", (), (), deleting=False)
    assert routing.filtered == ("non_scope_box",)
    assert not routing.delivered


# --------------------------------------------------------------------------------------------
# Box state and routing
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "flags", "reason"), [
    ({"status": "closed"}, BoxFlags(), "box_closed"),
    ({"archived": True}, BoxFlags(), "box_archived"),
    ({}, BoxFlags(corrupted=True), "corrupted_scope"),
    ({}, BoxFlags(waiting_full_sync=True), "waiting_for_full_sync"),
    ({"status": "closed", "archived": True}, BoxFlags(corrupted=True), "box_closed"),
])
def test_each_box_state_stops_the_update_with_its_reason(kwargs: dict[str, Any],
                                                          flags: BoxFlags, reason: str) -> None:
    d = directory(box("ops", **kwargs), flags={"ops": flags})
    routing = d.route(TASK, "OPS", (), (), deleting=False)
    assert routing.box_ids == ()
    assert routing.filtered == (reason,)
    assert routing.members == ("ops",)  # still in scope: membership is not box state


def test_a_task_in_an_archived_and_an_open_box_goes_to_the_open_one() -> None:
    d = directory(box("old", archived=True), box("new"))
    routing = d.route(TASK, "OPS", (), (), deleting=False)
    assert routing.box_ids == ("new",)
    assert routing.filtered == ("box_archived",)
    assert routing.delivered


def test_an_update_no_scope_selects_is_counted_no_box() -> None:
    routing = directory(box("web", projects=("WEB",))).route(TASK, "OPS", (), (), False)
    assert routing.filtered == ("no_box",)
    assert not routing.delivered


def test_an_update_stopped_by_several_boxes_counts_the_first_reason_once() -> None:
    d = directory(box("a", status="closed"), box("b", archived=True))
    assert d.route(TASK, "OPS", (), (), False).filtered == ("box_closed",)


def test_a_label_change_that_takes_the_task_out_lists_the_box_in_left_box_ids() -> None:
    d = directory(box("q3", labels=("q3",)), box("all"))
    entered = d.route(TASK, "OPS", ("q3",), (), False)
    assert entered.box_ids == ("all", "q3")
    left = d.route(TASK, "OPS", (), entered.members, False)
    assert (left.box_ids, left.left_box_ids, left.members) == (("all",), ("q3",), ("all",))
    back = d.route(TASK, "OPS", ("q3",), left.members, False)
    assert (back.box_ids, back.left_box_ids) == (("all", "q3"), ())


def test_a_project_move_out_of_every_box_still_tells_the_box_it_left() -> None:
    d = directory(box("ops"))
    routing = d.route(TASK, "HR", (), ("ops",), False)
    assert (routing.box_ids, routing.left_box_ids, routing.members) == ((), ("ops",), ())
    assert routing.delivered


def test_a_closed_box_is_not_told_that_a_task_left() -> None:
    d = directory(box("ops", status="closed"))
    routing = d.route(TASK, "HR", (), ("ops",), False)
    assert not routing.delivered
    assert routing.filtered == ("box_closed",)


def test_a_delete_goes_to_every_box_that_held_the_task_and_empties_membership() -> None:
    d = directory(box("ops"), box("q3", labels=("q3",)))
    routing = d.route(TASK, "OPS", (), ("ops", "q3"), deleting=True)
    assert (routing.box_ids, routing.left_box_ids, routing.members) == (("ops", "q3"), (), ())


def test_a_deleted_box_is_forgotten_quietly() -> None:
    routing = directory(box("ops")).route(TASK, "OPS", (), ("gone",), False)
    assert (routing.box_ids, routing.left_box_ids, routing.filtered) == (("ops",), (), ())


# --------------------------------------------------------------------------------------------
# Permissions and the last permitted author
# --------------------------------------------------------------------------------------------

GRANTS = {("ada", "OPS"): frozenset({"BROWSE_PROJECTS"}),
          ("bob", "OPS"): frozenset({"EDIT_ISSUES"}),
          ("ada", "trello:b1"): frozenset({"BOARD_MEMBER"})}


def author(user_id: str | None, kind: str = "user") -> dict[str, Any]:
    return {"kind": kind, "id": user_id, "name": user_id, "source": "jira"}


@pytest.mark.parametrize(("source", "project", "who", "allowed"), [
    ("jira", "OPS", author("ada"), True),
    ("jira", "OPS", author("bob"), False),  # a grant without BROWSE_PROJECTS
    ("jira", "WEB", author("ada"), False),  # no grant on that project
    ("jira", None, author("ada"), False),  # no project to check against
    ("jira", "OPS", author(None), False),  # a person without an id
    ("jira", "WEB", author(None, "technical"), True),  # the technical user always passes
    ("trello", "trello:b1", author("ada"), True),
    ("trello", "trello:b2", author("ada"), False),
    ("trello", "OPS", author("ada"), False),  # Trello needs BOARD_MEMBER, not BROWSE
])
def test_permission_rule(source: str, project: str | None, who: dict[str, Any],
                         allowed: bool) -> None:
    assert permitted(GRANTS, source, project, who) is allowed


def test_a_window_author_is_the_last_permitted_author_and_denied_fields_are_dropped() -> None:
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()

    def change(at: float, who: str, changes: dict[str, Any]) -> Change:
        return Change(f"e-{at}", TASK, "jira", "OPS-1", "OPS", "updated", start + at,
                      author(who), changes, "", int(at * 10))

    arriving = [change(1, "ada", {"summary": "Ada's"}), change(2, "bob", {"priority": "High"}),
                change(3, "bob", {"summary": "Bob's"})]
    windows, memory = PartitionWindows(5.0, 1.0), TaskMemory()
    for item in arriving:
        if permitted(GRANTS, item.source, item.project, item.author):
            windows.add(item, memory, start)
    [emitted] = windows.close_due({TASK: memory}, start + 60)
    assert emitted.update is not None
    assert emitted.update["author"]["id"] == "ada"
    assert emitted.update["changes"] == {"summary": "Ada's"}


def test_a_window_of_only_denied_changes_opens_nothing() -> None:
    windows = PartitionWindows(5.0, 1.0)
    denied = Change("e", TASK, "jira", "OPS-1", "OPS", "updated", 0.0, author("bob"), {}, "", 0)
    if permitted(GRANTS, denied.source, denied.project, denied.author):
        windows.add(denied, TaskMemory(), 0.0)
    assert windows.close_due({}, 1e9) == []


# --------------------------------------------------------------------------------------------
# Properties over any set of boxes
# --------------------------------------------------------------------------------------------

PROJECTS = ("OPS", "WEB", "trello:b1")
LABELS = ("a", "b", "c")


@st.composite
def boxes_strategy(draw: st.DrawFn) -> dict[str, Box]:
    count = draw(st.integers(0, 8))
    made: dict[str, Box] = {}
    for n in range(count):
        scope_type = draw(st.sampled_from(("own", "sub", "none")))
        made[f"b{n}"] = box(
            f"b{n}", scope_type=scope_type,
            projects=tuple(p for p in draw(st.sets(st.sampled_from(PROJECTS[:2])))),
            boards=tuple(draw(st.sets(st.sampled_from(("b1",))))),
            labels=tuple(draw(st.sets(st.sampled_from(LABELS), max_size=2))),
            manual=(TASK,) if draw(st.booleans()) and draw(st.booleans()) else (),
            parent=f"b{draw(st.integers(0, count - 1))}" if scope_type == "sub" else None,
            status=draw(st.sampled_from(("in_progress", "closed"))),
            archived=draw(st.booleans()) and draw(st.booleans()))
    return made


@settings(max_examples=300, deadline=None)
@given(boxes=boxes_strategy(), project=st.sampled_from((*PROJECTS, None)),
       labels=st.sets(st.sampled_from(LABELS)), previous=st.sets(st.sampled_from(
           [f"b{n}" for n in range(10)])), deleting=st.booleans(),
       corrupted=st.sets(st.sampled_from([f"b{n}" for n in range(8)])))
def test_routing_invariants(boxes: dict[str, Box], project: str | None, labels: set[str],
                            previous: set[str], deleting: bool, corrupted: set[str]) -> None:
    d = Directory(boxes, {box_id: BoxFlags(corrupted=True) for box_id in corrupted})
    routing = d.route(TASK, project, tuple(labels), tuple(sorted(previous)), deleting)
    # Only boxes that exist and take updates are reached or told.
    for box_id in (*routing.box_ids, *routing.left_box_ids):
        assert box_id in boxes and d.refusal(boxes[box_id]) is None
    assert not set(routing.box_ids) & set(routing.left_box_ids)
    assert list(routing.box_ids) == sorted(routing.box_ids)
    # Members hold the task: never a `none` box; a delete leaves no member.
    assert all(boxes[box_id].scope_type != "none" for box_id in routing.members)
    assert routing.members == () if deleting else set(routing.box_ids) <= set(routing.members)
    # Those told to drop it held it before and hold it no more.
    assert set(routing.left_box_ids) <= previous - set(routing.members)
    # Nothing reached: exactly one reason is counted.
    if not routing.delivered:
        assert len(routing.filtered) == 1
    # The cached answer for (project, labels) is the one computed afresh.
    fresh = Directory(boxes, {box_id: BoxFlags(corrupted=True) for box_id in corrupted})
    assert fresh.route(TASK, project, tuple(labels), tuple(sorted(previous)),
                       deleting) == routing
