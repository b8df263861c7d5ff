"""Collapse of change events into one `TaskUpdate` per task and window (behaviour.md).

Time is always passed in: source times are epoch seconds derived from fixed timezone-aware
datetimes, and `now` (wall-clock) is a float chosen by each test. Every emitted update is
validated against the pydantic contract model `schemas.events.TaskUpdate`.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from processors.collapse.logic import (
    Arrival,
    Change,
    Emitted,
    PartitionWindows,
    TaskMemory,
    update_id,
)
from schemas.events import TaskUpdate

INTERVAL = 5.0
GRACE = 1.0
# A window start: 09:00:00 UTC is a multiple of the 5 s interval.
T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC).timestamp()
WALL = datetime(2026, 3, 2, 9, 0, 2, tzinfo=UTC).timestamp()  # wall-clock of the first arrival
FAR = WALL + 3600.0  # a wall-clock at which every window is long due

TASK = "jira:acme.atlassian.net:10583"
OTHER_TASK = "jira:acme.atlassian.net:10584"


def person(person_id: str, name: str) -> dict[str, Any]:
    return {"kind": "user", "id": person_id, "name": name, "source": "jira"}


ADA = person("557058:ada", "Ada Lovelace")
BOB = person("712020:bob", "Bob Builder")
CAROL = person("5b10ac8d82e05b22cc7d4ef5", "Carol Danvers")
TECHNICAL = {"kind": "technical", "id": None, "name": None, "source": "jira"}


def change(at: float, *, author: dict[str, Any] = ADA, changes: dict[str, Any] | None = None,
           kind: str = "updated", task: str = TASK, event_id: str | None = None,
           tiebreak: str = "", offset: int = 0) -> Change:
    """A Change at `T0 + at` seconds of source time."""
    return Change(
        event_id=event_id or f"evt-{task}-{at}-{tiebreak}-{author['id']}",
        task_id=task, source="jira", source_key="OPS-217", project="OPS", kind=kind,
        at=T0 + at, author=author, changes=dict(changes or {}), tiebreak=tiebreak,
        offset=offset)


NEVER_CLOSED = float("-inf")


def new_state() -> tuple[PartitionWindows, defaultdict[str, TaskMemory]]:
    return PartitionWindows(interval=INTERVAL, grace=GRACE), defaultdict(TaskMemory)


def feed(windows: PartitionWindows, memories: defaultdict[str, TaskMemory],
         changes: Iterable[Change], now: float = WALL) -> list[bool]:
    """Add changes in arrival order; returns their `late` flags."""
    return [windows.add(item, memories[item.task_id], now) == Arrival.LATE for item in changes]


def close(windows: PartitionWindows, memories: defaultdict[str, TaskMemory],
          now: float = FAR) -> list[Emitted]:
    emitted = windows.close_due(memories, now)
    for result in emitted:
        if result.update is not None:
            TaskUpdate.model_validate(result.update)
    return emitted


def updates(emitted: list[Emitted]) -> list[dict[str, Any]]:
    return [result.update for result in emitted if result.update is not None]


def collapse_once(changes: Iterable[Change]) -> dict[str, Any]:
    """Feed the changes into fresh state, close everything, expect exactly one update."""
    windows, memories = new_state()
    feed(windows, memories, changes)
    emitted = updates(close(windows, memories))
    assert len(emitted) == 1, emitted
    return emitted[0]


def arrive(changes: Iterable[Change]) -> list[Change]:
    """Give the changes offsets in arrival order, as the partition would."""
    return [change(c.at - T0, author=c.author, changes=c.changes, kind=c.kind, task=c.task_id,
                   event_id=c.event_id, tiebreak=c.tiebreak, offset=100 + position)
            for position, c in enumerate(changes)]


# Three people change one task within one window.
ADA_DRAFT = change(0.5, author=ADA, changes={"summary": "Draft", "priority": "Low"})
BOB_PLAN = change(2.0, author=BOB, changes={"summary": "Plan", "status": "In Progress",
                                            "status_category": "indeterminate"})
CAROL_DONE = change(3.5, author=CAROL, changes={"status": "Done", "status_category": "done",
                                                "assignee": CAROL["id"]})


# --------------------------------------------------------------------------------------------
# Collapse of one window
# --------------------------------------------------------------------------------------------

def test_three_people_in_one_window_give_exactly_one_update() -> None:
    update = collapse_once(arrive([CAROL_DONE, ADA_DRAFT, BOB_PLAN]))
    assert update["task_id"] == TASK
    assert update["op"] == "upsert"
    assert update["sync_type"] == "partial"
    assert update["collapsed"] == 3


def test_author_is_the_person_of_the_latest_change_by_source_time() -> None:
    """Carol changed last by source time, although her event arrived first."""
    update = collapse_once(arrive([CAROL_DONE, ADA_DRAFT, BOB_PLAN]))
    assert update["author"] == CAROL


def test_each_field_takes_its_latest_value_by_source_time() -> None:
    update = collapse_once(arrive([CAROL_DONE, ADA_DRAFT, BOB_PLAN]))
    assert update["changes"] == {"summary": "Plan", "priority": "Low", "status": "Done",
                                 "status_category": "done", "assignee": CAROL["id"]}


def test_update_carries_window_bounds_source_time_and_event_ids_in_source_order() -> None:
    update = collapse_once(arrive([CAROL_DONE, ADA_DRAFT, BOB_PLAN]))
    parsed = TaskUpdate.model_validate(update)
    assert parsed.window_start == datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
    assert parsed.window_end == datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC)
    assert parsed.source_updated_at == datetime(2026, 3, 2, 9, 0, 3, 500000, tzinfo=UTC)
    assert update["event_ids"] == [ADA_DRAFT.event_id, BOB_PLAN.event_id, CAROL_DONE.event_id]
    assert (update["source_key"], update["project"]) == ("OPS-217", "OPS")


def test_update_validates_against_the_task_update_contract() -> None:
    update = collapse_once(arrive([ADA_DRAFT, BOB_PLAN, CAROL_DONE]))
    parsed = TaskUpdate.model_validate(update)
    assert parsed.box_ids == []
    assert parsed.schema_version == 1


def test_same_events_in_any_arrival_order_give_the_identical_update() -> None:
    """Offsets follow arrival; the result must still not depend on it."""
    same_time_low = change(3.5, author=ADA, changes={"description": "v1"},
                           tiebreak="00000000000000010001")
    same_time_high = change(3.5, author=BOB, changes={"description": "v2"},
                            tiebreak="00000000000000010002")
    events = [ADA_DRAFT, BOB_PLAN, same_time_low, same_time_high, CAROL_DONE]
    results = {repr(collapse_once(arrive(order))) for order in itertools.permutations(events)}
    assert len(results) == 1
    update = collapse_once(arrive(events))
    assert update["changes"]["description"] == "v2"


def test_tie_on_source_time_is_broken_by_tiebreak() -> None:
    higher = change(2.0, author=BOB, changes={"summary": "B"}, tiebreak="00000000000000010235",
                    offset=1)
    lower = change(2.0, author=ADA, changes={"summary": "A"}, tiebreak="00000000000000010234",
                   offset=2)
    update = collapse_once([higher, lower])
    assert update["changes"] == {"summary": "B"}
    assert update["author"] == BOB


def test_tie_on_source_time_and_tiebreak_is_broken_by_offset() -> None:
    first = change(2.0, author=ADA, changes={"summary": "A"}, event_id="e-1", offset=10)
    second = change(2.0, author=BOB, changes={"summary": "B"}, event_id="e-2", offset=11)
    for order in ([first, second], [second, first]):
        update = collapse_once(order)
        assert update["changes"] == {"summary": "B"}
        assert update["author"] == BOB


def test_technical_change_after_a_human_keeps_the_human_author() -> None:
    human = change(1.0, author=ADA, changes={"summary": "Plan"})
    system = change(3.0, author=TECHNICAL, changes={"status": "Done"})
    update = collapse_once([human, system])
    assert update["author"] == ADA
    assert update["changes"] == {"summary": "Plan", "status": "Done"}


def test_window_of_only_technical_changes_has_the_technical_author() -> None:
    update = collapse_once([change(1.0, author=TECHNICAL, changes={"status": "Done"}),
                            change(2.0, author=TECHNICAL, changes={"priority": "Low"})])
    assert update["author"] == TECHNICAL


def test_duplicate_event_id_in_one_window_is_counted_once() -> None:
    first = change(1.0, changes={"summary": "Plan"}, event_id="delivery-1", offset=1)
    retry = change(1.0, changes={"summary": "Plan"}, event_id="delivery-1", offset=2)
    update = collapse_once([first, retry])
    assert update["collapsed"] == 1
    assert update["event_ids"] == ["delivery-1"]


def test_different_tasks_get_separate_updates() -> None:
    windows, memories = new_state()
    feed(windows, memories, [change(1.0, task=TASK, changes={"summary": "A"}),
                             change(1.5, task=OTHER_TASK, changes={"summary": "B"})])
    emitted = {u["task_id"]: u for u in updates(close(windows, memories))}
    assert emitted.keys() == {TASK, OTHER_TASK}
    assert emitted[TASK]["changes"] == {"summary": "A"}
    assert emitted[OTHER_TASK]["changes"] == {"summary": "B"}


# --------------------------------------------------------------------------------------------
# Deletes are final
# --------------------------------------------------------------------------------------------

def test_created_then_deleted_in_one_window_is_a_delete() -> None:
    windows, memories = new_state()
    feed(windows, memories, [
        change(1.0, kind="created", changes={"summary": "Plan", "status": "To Do"}),
        change(3.0, kind="deleted", author=BOB),
    ])
    [update] = updates(close(windows, memories))
    assert update["op"] == "delete"
    assert update["changes"] == {}
    assert update["author"] == BOB
    assert memories[TASK].deleted


def test_later_window_of_a_deleted_task_is_dropped_as_stale() -> None:
    windows, memories = new_state()
    feed(windows, memories, [change(1.0, kind="created", changes={"summary": "Plan"}),
                             change(3.0, kind="deleted")])
    close(windows, memories)
    feed(windows, memories, [change(12.0, changes={"summary": "Zombie"})], now=FAR)
    [dropped] = close(windows, memories, now=FAR + 60)
    assert dropped.update is None
    assert dropped.dropped_reason == "stale"
    assert dropped.task_id == TASK


# --------------------------------------------------------------------------------------------
# When windows close
# --------------------------------------------------------------------------------------------

def test_window_stays_open_until_stream_time_passes_end_plus_grace() -> None:
    """Window [0, 5) with grace 1 closes once another event's source time passes 6."""
    windows, memories = new_state()
    feed(windows, memories, [change(1.0, changes={"summary": "Plan"})])
    feed(windows, memories, [change(5.9, task=OTHER_TASK, changes={"summary": "x"})])
    assert close(windows, memories, now=WALL) == []
    feed(windows, memories, [change(6.1, task=OTHER_TASK, changes={"summary": "y"})])
    [closed] = close(windows, memories, now=WALL)
    assert closed.task_id == TASK
    assert closed.update is not None
    assert closed.update["changes"] == {"summary": "Plan"}


def test_quiet_partition_closes_on_wall_clock_without_more_events() -> None:
    """A change at the window start is emitted interval + grace after it arrived."""
    windows, memories = new_state()
    feed(windows, memories, [change(0.0, changes={"summary": "Plan"})], now=WALL)
    assert close(windows, memories, now=WALL + INTERVAL + GRACE - 0.01) == []
    [closed] = close(windows, memories, now=WALL + INTERVAL + GRACE + 0.01)
    assert closed.update is not None
    assert closed.update["changes"] == {"summary": "Plan"}


def test_closed_window_is_emitted_once() -> None:
    windows, memories = new_state()
    feed(windows, memories, [change(1.0, changes={"summary": "Plan"})])
    assert len(close(windows, memories)) == 1
    assert close(windows, memories, now=FAR + 3600) == []
    assert windows.windows == {}


# --------------------------------------------------------------------------------------------
# Late changes
# --------------------------------------------------------------------------------------------

def _late_scenario() -> tuple[list[bool], list[Emitted], list[Emitted]]:
    """Window [0, 5): Ada sets description at 1, summary at 4. Bob's change at 7 closes it.
    Then Carol's change at 2 arrives late: older than the summary, newer than the
    description, and the only one to set the priority."""
    windows, memories = new_state()
    flags = feed(windows, memories, [
        change(1.0, author=ADA, changes={"description": "v1"}, offset=1),
        change(4.0, author=ADA, changes={"summary": "Final"}, offset=2),
        change(7.0, author=BOB, changes={"status": "Done"}, offset=3),
    ])
    first = close(windows, memories, now=WALL)
    flags += feed(windows, memories, [change(2.0, author=CAROL, offset=4, changes={
        "summary": "Early", "description": "v2", "priority": "High"})])
    second = close(windows, memories)
    return flags, first, second


def test_late_change_is_flagged_late_and_joins_the_next_window() -> None:
    flags, first, second = _late_scenario()
    assert flags == [False, False, False, True]
    assert [e.task_id for e in first] == [TASK]
    [update] = updates(second)
    assert update["collapsed"] == 2
    assert update["window_start"] == updates(first)[0]["window_end"]


def test_late_change_does_not_overwrite_a_field_applied_from_a_newer_change() -> None:
    _, _, second = _late_scenario()
    [update] = updates(second)
    assert "summary" not in update["changes"]


def test_late_change_sets_fields_where_it_is_newer_than_what_was_applied() -> None:
    _, first, second = _late_scenario()
    assert updates(first)[0]["changes"] == {"description": "v1", "summary": "Final"}
    [update] = updates(second)
    assert update["changes"] == {"description": "v2", "priority": "High", "status": "Done"}
    assert update["author"] == BOB


def test_late_change_without_an_open_window_opens_one_after_the_closed_one() -> None:
    windows, memories = new_state()
    feed(windows, memories, [change(1.0, changes={"summary": "Plan"}, offset=1)])
    [first] = updates(close(windows, memories))
    late = feed(windows, memories, [change(3.0, author=BOB, changes={"priority": "Low"},
                                           offset=2)], now=FAR)
    assert late == [True]
    [second] = updates(close(windows, memories, now=FAR + 60))
    assert second["changes"] == {"priority": "Low"}
    assert second["window_start"] >= first["window_end"]
    assert second["update_id"] != first["update_id"]


def test_late_change_newer_than_an_open_window_does_not_make_that_window_stale() -> None:
    """Found by `make chaos` after a broker restart: the task had a late window open at 10
    and an on-time one at 15, and a change at 21 arrived late (stream time had jumped to 30
    on another task's backlog). It joined the window at 10, which closed first with status
    Done at 21; the window at 15 then held only older fields and was dropped as stale, so its
    change was on no update."""
    windows, memories = new_state()
    memories[TASK].closed_until = T0 + 10.0
    early = change(3.0, changes={"priority": "Low"}, offset=1)
    on_time = change(16.0, author=BOB, changes={"status": "In Progress"}, offset=2)
    newer = change(21.0, author=CAROL, changes={"status": "Done"}, offset=4)
    other = change(30.0, task=OTHER_TASK, changes={"summary": "x"}, offset=3)
    assert feed(windows, memories, [early, on_time, other, newer]) == [True, False, False, True]
    emitted = updates(close(windows, memories))
    mine = [u for u in emitted if u["task_id"] == TASK]
    assert {e for u in mine for e in u["event_ids"]} == {early.event_id, on_time.event_id,
                                                          newer.event_id}
    assert mine[-1]["changes"]["status"] == "Done"
    assert mine[-1]["author"] == CAROL


def test_a_second_delivery_that_arrives_late_into_another_open_window_is_a_duplicate() -> None:
    """Found by `make chaos` (a sender that re-sent after a broker restart): the first copy
    was late and in the window at 10, an on-time change opened the window at 15, and the
    second copy, late too, went into the window at 15: both windows emitted the change."""
    windows, memories = new_state()
    memories[TASK].closed_until = T0 + 10.0
    first = change(3.0, changes={"priority": "Low"}, event_id="evt-1", offset=1)
    on_time = change(16.0, author=BOB, changes={"status": "In Progress"}, offset=2)
    again = change(3.0, changes={"priority": "Low"}, event_id="evt-1", offset=3)
    assert windows.add(first, memories[TASK], WALL) == Arrival.LATE
    assert windows.add(on_time, memories[TASK], WALL) == Arrival.ON_TIME
    assert windows.add(again, memories[TASK], WALL) == Arrival.DUPLICATE
    emitted = updates(close(windows, memories))
    assert sum(u["event_ids"].count("evt-1") for u in emitted) == 1


@pytest.mark.xfail(strict=True, reason=(
    "BUG: the late-change guard compares source time only (field_times > change.at); a late "
    "change with the SAME source time but a LOWER tiebreak overwrites the value applied from "
    "the higher tiebreak, so the result depends on arrival order"))
def test_late_change_with_equal_time_and_lower_tiebreak_does_not_overwrite() -> None:
    """Order is (source time, tiebreak, offset): in one window 'A' wins over 'B'."""
    winner = change(2.0, author=ADA, changes={"summary": "A"}, tiebreak="00000000000000010002",
                    offset=1)
    loser = change(2.0, author=BOB, changes={"summary": "B"}, tiebreak="00000000000000010001",
                   offset=2)
    assert collapse_once([winner, loser])["changes"] == {"summary": "A"}
    windows, memories = new_state()
    feed(windows, memories, [winner])
    close(windows, memories)
    assert feed(windows, memories, [loser], now=FAR) == [True]
    later = updates(close(windows, memories, now=FAR + 60))
    assert all(u["changes"].get("summary") != "B" for u in later)


def test_duplicate_delivery_after_its_window_closed_is_not_applied_again() -> None:
    """behaviour.md: the same delivery twice (same event_id) is applied once. A retry is
    another raw record (another origin) carrying the same event id."""
    windows, memories = new_state()
    original = change(1.0, changes={"summary": "Plan"}, event_id="delivery-1", offset=1)
    original.origin = "jira.events:0:10"
    feed(windows, memories, [original])
    assert len(updates(close(windows, memories))) == 1
    retry = change(1.0, changes={"summary": "Plan"}, event_id="delivery-1", offset=2)
    retry.origin = "jira.events:0:99"
    assert windows.add(retry, memories[retry.task_id], FAR) == Arrival.DUPLICATE
    assert updates(close(windows, memories, now=FAR + 60)) == []


def test_the_same_record_read_again_after_a_crash_is_not_a_duplicate() -> None:
    """The cache may already hold a window whose update never reached Kafka (killed between
    the two commits): re-reading the very same raw record must emit it again."""
    windows, memories = new_state()
    first = change(1.0, changes={"summary": "Plan"}, event_id="delivery-1", offset=1)
    first.origin = "jira.events:0:10"
    feed(windows, memories, [first])
    [emitted] = updates(close(windows, memories))
    survivor = TaskMemory(closed_until=NEVER_CLOSED, recent=dict(memories[TASK].recent))
    again, replayed = new_state()
    replayed[TASK] = survivor
    reread = change(1.0, changes={"summary": "Plan"}, event_id="delivery-1", offset=1)
    reread.origin = "jira.events:0:10"
    assert again.add(reread, replayed[TASK], WALL) == Arrival.ON_TIME
    [update] = updates(close(again, replayed))
    assert update["update_id"] == emitted["update_id"]


def test_event_ids_are_remembered_for_the_retention_and_dropped_in_bulk_after_twice() -> None:
    """Kept at least the retention; dropped together once the oldest is twice that old, so
    a busy task's cache row mostly grows by its new ids instead of being rewritten whole."""
    windows = PartitionWindows(interval=INTERVAL, grace=GRACE, dedupe_retention=3600)
    memories: defaultdict[str, TaskMemory] = defaultdict(TaskMemory)
    emitted = feed_and_close(windows, memories, change(1.0, event_id="old"))
    assert (emitted.recent, emitted.recent_whole) == ({"old": (T0 + 1.0, "")}, False)
    # Past the retention but not twice it: still remembered, and the row only adds the new id.
    emitted = feed_and_close(windows, memories, change(4000.0, event_id="mid"))
    assert set(memories[TASK].recent) == {"old", "mid"}
    assert (set(emitted.recent), emitted.recent_whole) == ({"mid"}, False)
    # Twice the retention: every id older than the retention goes, and the row is rewritten.
    emitted = feed_and_close(windows, memories, change(7300.0, event_id="new"))
    assert set(memories[TASK].recent) == {"mid", "new"}
    assert emitted.recent_whole and emitted.recent is memories[TASK].recent


def feed_and_close(windows: PartitionWindows, memories: defaultdict[str, TaskMemory],
                   one: Change) -> Emitted:
    one.changes = {"summary": one.event_id}
    windows.add(one, memories[one.task_id], FAR)
    [emitted] = windows.close_due(memories, FAR + 60)
    return emitted


# --------------------------------------------------------------------------------------------
# update_id
# --------------------------------------------------------------------------------------------

def test_update_id_is_the_same_for_the_same_task_and_window() -> None:
    """A replay must produce the same ids."""
    first = collapse_once([change(1.0, changes={"summary": "Plan"})])
    replay = collapse_once([change(3.0, author=BOB, changes={"summary": "Other"})])
    assert first["update_id"] == replay["update_id"]
    assert first["update_id"] == update_id(TASK, "partial", T0)


def test_update_id_differs_for_another_window() -> None:
    first = collapse_once([change(1.0, changes={"summary": "Plan"})])
    next_window = collapse_once([change(6.0, changes={"summary": "Plan"})])
    assert first["update_id"] != next_window["update_id"]


def test_update_id_differs_for_another_task() -> None:
    first = collapse_once([change(1.0, changes={"summary": "Plan"})])
    other = collapse_once([change(1.0, task=OTHER_TASK, changes={"summary": "Plan"})])
    assert first["update_id"] != other["update_id"]


# --------------------------------------------------------------------------------------------
# commit_point
# --------------------------------------------------------------------------------------------

def test_commit_point_is_next_offset_when_no_window_is_open() -> None:
    windows, _ = new_state()
    assert windows.commit_point(57) == (57, None)


def test_commit_point_never_passes_the_first_offset_of_an_open_window() -> None:
    windows, memories = new_state()
    feed(windows, memories, [change(1.0, changes={"summary": "a"}, offset=10),
                             change(2.0, task=OTHER_TASK, changes={"summary": "b"}, offset=12),
                             change(3.0, changes={"summary": "c"}, offset=13),
                             change(6.5, changes={"summary": "d"}, offset=14)], now=WALL)
    offset, open_since = windows.commit_point(15)
    assert offset == 10
    assert open_since == WALL


def test_commit_point_moves_on_as_windows_close() -> None:
    windows, memories = new_state()
    feed(windows, memories, [change(1.0, changes={"summary": "a"}, offset=10),
                             change(6.5, task=OTHER_TASK, changes={"summary": "b"}, offset=11)])
    assert windows.commit_point(12)[0] == 10
    feed(windows, memories, [change(6.9, task=OTHER_TASK, changes={"summary": "c"}, offset=12)])
    [closed] = close(windows, memories, now=WALL)
    assert closed.task_id == TASK
    assert windows.commit_point(13)[0] == 11
    close(windows, memories)
    assert windows.commit_point(13) == (13, None)


def test_commit_point_is_at_most_next_offset() -> None:
    windows, memories = new_state()
    feed(windows, memories, [change(1.0, changes={"summary": "a"}, offset=10)])
    assert windows.commit_point(5)[0] == 5
