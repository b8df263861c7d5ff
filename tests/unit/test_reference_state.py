"""Reference state from compacted topics: the last record per key wins, tombstones delete."""

from __future__ import annotations

from typing import Any

import pytest

from processors.filters.reference import BROWSE_PROJECTS, BadReference, ReferenceState


def box(box_id: str = "B1", **overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "box_id": box_id, "name": "Plan", "box_type": "program", "scope_type": "own",
        "status": "in_progress", "scope": {"jira_projects": ["OPS"], "labels_all": ["q4"]},
        "scope_owner": {"kind": "scope_owner", "id": "557058:owner", "name": "Owner",
                        "source": "jira"},
        "admins": ["557058:admin"]}
    value.update(overrides)
    return value


def grant(user: str = "557058:alice", project: str = "OPS",
          permissions: tuple[str, ...] = (BROWSE_PROJECTS,)) -> dict[str, Any]:
    return {"user_id": user, "project": project, "permissions": list(permissions),
            "updated_at": "2026-11-28T10:00:00Z"}


def test_a_box_is_defined_replaced_and_deleted_by_a_tombstone() -> None:
    state = ReferenceState()
    state.apply("box.definitions", "B1", box())
    state.apply("box.definitions", "B1", box(status="closed"))
    assert state.boxes["B1"].status == "closed"
    assert state.boxes["B1"].scope.jira_projects == ["OPS"]
    state.apply("box.definitions", "B1", None)
    assert "B1" not in state.boxes


def test_a_grant_gives_and_a_tombstone_revokes() -> None:
    state = ReferenceState()
    state.apply("jira.permissions", "557058:alice|OPS", grant())
    assert state.may("557058:alice", "OPS", BROWSE_PROJECTS)
    assert not state.may("557058:alice", "DEV", BROWSE_PROJECTS)
    assert not state.may("557058:bob", "OPS", BROWSE_PROJECTS)
    assert not state.may(None, "OPS", BROWSE_PROJECTS)
    state.apply("jira.permissions", "557058:alice|OPS", None)
    assert not state.may("557058:alice", "OPS", BROWSE_PROJECTS)


def test_replaying_a_topic_from_its_start_rebuilds_the_same_state() -> None:
    records = [("B1", box()), ("B2", box("B2")), ("B1", None), ("B2", box("B2", archived=True))]
    once, twice = ReferenceState(), ReferenceState()
    for key, value in records:
        once.apply("box.definitions", key, value)
    for key, value in records + records:
        twice.apply("box.definitions", key, value)
    assert once.boxes == twice.boxes and set(once.boxes) == {"B2"}
    assert once.boxes["B2"].archived


def test_okr_links_follow_their_key() -> None:
    state = ReferenceState()
    link = {"key_result_id": "KR1", "objective_id": "O1", "mode": "auto",
            "task_ids": ["jira:s:1"], "box_ids": ["B1"]}
    state.apply("okr.links", "KR1", link)
    assert state.links["KR1"].box_ids == ["B1"]
    state.apply("okr.links", "KR1", None)
    assert state.links == {}


@pytest.mark.parametrize(("topic", "key", "value", "says"), [
    ("box.definitions", "B1", {"box_id": "B1"}, "invalid field"),
    ("box.definitions", "B9", box("B1"), "differs from box_id"),
    ("jira.permissions", "no-separator", grant(), "is not <user id>|<project>"),
    ("jira.permissions", "557058:bob|OPS", grant(), "differs from its grant"),
    ("okr.links", "KR1", {"key_result_id": "KR1", "objective_id": "O", "mode": "sometimes"},
     "invalid field"),
    ("sync.changes", "x", {}, "not a reference topic"),
])
def test_bad_records_are_refused_with_a_reason(topic: str, key: str, value: dict[str, Any],
                                               says: str) -> None:
    with pytest.raises(BadReference, match=says):
        ReferenceState().apply(topic, key, value)
