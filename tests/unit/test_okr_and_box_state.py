"""OKR progress arithmetic and the corrupted-scope rules, pure (behaviour.md "OKR",
"Filters")."""

from __future__ import annotations

from typing import Any

import pytest

from processors.boxes.logic import warnings_for_event, warnings_for_revoked_grant
from processors.okr.logic import Tally, linked_key_results, progress, touches_status
from schemas.events import KeyResultProgress
from schemas.reference import Box, KeyResultLink

TASK = "jira:acme.atlassian.net:10001"
AT = "2026-03-02T09:00:00.000Z"


def link(key_result_id: str, mode: str = "auto", tasks: tuple[str, ...] = (),
         boxes: tuple[str, ...] = ()) -> KeyResultLink:
    return KeyResultLink(key_result_id=key_result_id, objective_id="obj-1", mode=mode,
                         task_ids=list(tasks), box_ids=list(boxes))


def test_status_changes_and_deletes_touch_key_results_other_fields_do_not() -> None:
    assert touches_status({"op": "upsert", "changes": {"status": "Done"}})
    assert touches_status({"op": "upsert", "changes": {"status_category": "done"}})
    assert touches_status({"op": "delete", "changes": {}})
    assert not touches_status({"op": "upsert", "changes": {"summary": "x"}})


def test_a_key_result_linked_directly_and_through_a_box_is_found_once() -> None:
    links = [link("kr-2", boxes=("ops",)), link("kr-1", tasks=(TASK,), boxes=("ops",)),
             link("kr-3", tasks=("other",))]
    found = linked_key_results(links, TASK, ("ops",))
    assert [item.key_result_id for item in found] == ["kr-1", "kr-2"]


@pytest.mark.parametrize(("done", "total", "percent"), [
    (0, 4, 0.0), (1, 4, 25.0), (4, 4, 100.0), (1, 3, 33.33), (0, 0, 0.0)])
def test_auto_progress_is_done_over_total_times_100(done: int, total: int,
                                                    percent: float) -> None:
    message = progress(link("kr-1"), TASK, "Done", "done", Tally(done, total), AT)
    assert (message["done"], message["total"], message["progress_pct"]) == (done, total,
                                                                            percent)
    KeyResultProgress.model_validate(message)


def test_manual_key_results_report_the_status_only() -> None:
    message = progress(link("kr-1", mode="manual"), TASK, "Done", "done", None, AT)
    assert message["task_status"] == "Done"
    assert (message["done"], message["total"], message["progress_pct"]) == (None, None, None)
    KeyResultProgress.model_validate(message)


# --------------------------------------------------------------------------------------------
# Corrupted scope
# --------------------------------------------------------------------------------------------

def box(box_id: str, projects: tuple[str, ...] = ("OPS",), boards: tuple[str, ...] = (),
        owner: str = "olga") -> Box:
    return Box.model_validate({
        "box_id": box_id, "name": box_id, "box_type": "program", "scope_type": "own",
        "scope": {"jira_projects": list(projects), "trello_boards": list(boards)},
        "scope_owner": {"kind": "user", "id": owner, "source": "jira"}})


def reference_event(upstream: str, project: str) -> dict[str, Any]:
    return {"event_id": "evt-1", "upstream_event": upstream, "project": project}


@pytest.mark.parametrize("upstream", ["project_deleted", "project_archived",
                                      "project_soft_deleted"])
def test_a_removed_project_flags_boxes_whose_scope_names_it(upstream: str) -> None:
    found = warnings_for_event(reference_event(upstream, "OPS"),
                               [box("a"), box("b", projects=("WEB",))])
    assert [(w.box_id, w.cause_id, w.kind) for w in found] == [("a", "evt-1", upstream)]
    assert "clear the warning" in found[0].message


@pytest.mark.parametrize("upstream", ["project_updated", "project_created",
                                      "project_restored_deleted", "jira:version_released"])
def test_other_project_events_flag_nothing(upstream: str) -> None:
    assert warnings_for_event(reference_event(upstream, "OPS"), [box("a")]) == []


def test_a_closed_trello_board_flags_boxes_naming_the_board() -> None:
    found = warnings_for_event(reference_event("board_closed", "trello:b1"),
                               [box("a", projects=(), boards=("b1",)), box("b")])
    assert [w.box_id for w in found] == ["a"]


def test_a_revoked_grant_of_the_scope_owner_on_a_scope_project_flags_the_box() -> None:
    boxes = [box("a"), box("b", owner="someone-else"), box("c", projects=("WEB",))]
    found = warnings_for_revoked_grant("olga", "OPS", "jira.permissions:0:7", boxes)
    assert [(w.box_id, w.kind) for w in found] == [("a", "scope_owner_lost_access")]
    assert warnings_for_revoked_grant("bob", "OPS", "x", boxes) == []
