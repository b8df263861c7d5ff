"""A `sync.changes` record value → the collapse's `Change` (pure; no broker).

The collapse decodes each change straight into typed fields; these pin what it accepts, what
it refuses (a ValueError, which the stage turns into a dead letter) and what it keeps."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from confluent_kafka import Message

from processors.collapse.agents import CollapseStage, PartitionState
from processors.collapse.logic import Change, PartitionWindows, TaskMemory, close_window
from processors.metrics import Metrics
from processors.settings import load_settings

ADA = {"kind": "user", "id": "557058:ada", "name": "Ada Lovelace", "source": "jira"}


def change_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "schema_version": 1, "event_id": "e-1", "task_id": "jira:acme.atlassian.net:10583",
        "source": "jira", "source_key": "OPS-217", "project": "OPS", "kind": "updated",
        "occurred_at": "2026-03-02T09:00:01.250Z", "author": ADA,
        "changes": {"summary": "Rotate the on-call schedule"},
        "origin": {"topic": "jira.events", "partition": 2, "offset": 41},
        "tiebreak": "00000000000000010234", "upstream_event": "jira:issue_updated",
    }
    event.update(overrides)
    return {name: value for name, value in event.items() if value is not _DROP}


_DROP = object()


def decode(**overrides: Any) -> Change:
    return Change.decode(orjson.dumps(change_event(**overrides)), 17)


def test_a_change_event_decodes_with_its_offset_origin_and_time() -> None:
    change = decode()
    assert change.event_id == "e-1"
    assert change.task_id == "jira:acme.atlassian.net:10583"
    assert (change.source, change.source_key, change.project, change.kind) == \
        ("jira", "OPS-217", "OPS", "updated")
    assert change.at == 1772442001.25
    assert change.author == ADA
    assert change.changes == {"summary": "Rotate the on-call schedule"}
    assert change.tiebreak == "00000000000000010234"
    assert change.offset == 17
    assert change.origin == "jira.events:2:41"
    assert change.occurred_at == "2026-03-02T09:00:01.250Z"


def test_optional_parts_may_be_missing_or_null_and_unknown_fields_are_ignored() -> None:
    change = decode(changes=None, tiebreak=None, source_key=_DROP, project=None,
                    upstream_event=_DROP, added_later={"any": ["thing"]})
    assert change.changes == {}
    assert change.tiebreak == ""
    assert change.source_key is None and change.project is None


def test_a_numeric_event_id_is_read_as_text() -> None:
    assert decode(event_id=12345).event_id == "12345"


def test_another_iso_form_with_a_zone_is_accepted() -> None:
    assert decode(occurred_at="2026-03-02T10:00:01.25+01:00").at == 1772442001.25


@pytest.mark.parametrize("value", [
    b"", b"not json", b"[1, 2]", b"null", b'"text"',
    orjson.dumps(change_event(author="Ada")),
    orjson.dumps(change_event(changes=["summary"])),
    orjson.dumps(change_event(task_id=_DROP)),
    orjson.dumps(change_event(task_id=10583)),
    orjson.dumps(change_event(occurred_at=_DROP)),
    orjson.dumps(change_event(occurred_at="yesterday")),
    orjson.dumps(change_event(occurred_at="2026-03-02T09:00:01")),  # no zone
    orjson.dumps(change_event(origin="jira.events:2:41")),
])
def test_anything_that_is_not_a_change_event_is_a_value_error(value: bytes) -> None:
    with pytest.raises(ValueError):
        Change.decode(value, 0)


def test_source_updated_at_is_the_newest_change_time_in_the_contract_form() -> None:
    windows = PartitionWindows(5.0, 1.0)
    canonical = decode(event_id="a", occurred_at="2026-03-02T09:00:01.250Z")
    other_form = decode(event_id="b", occurred_at="2026-03-02T10:00:02.5+01:00")
    for change in (canonical, other_form):
        windows.add(change, TaskMemory(), 0.0)
    [window] = windows.windows.values()
    update = close_window(window, TaskMemory(), 0.0).update
    assert update is not None
    assert update["source_updated_at"] == "2026-03-02T09:00:02.500Z"


def test_the_stage_dead_letters_a_change_it_cannot_decode_and_goes_on() -> None:
    settings = load_settings(filters_enabled=False, topic_prefix="")
    stage = CollapseStage(settings, Metrics.create(), "postgresql://unused")
    stage._partitions[0] = PartitionState(PartitionWindows(5.0, 1.0))
    bad = Message(topic="sync.changes", partition=0, offset=3, key=b"k", value=b"{oops",
                  headers=None)
    [letter] = stage.handle([bad], 0.0)
    assert letter.topic == "sync.deadletter"
    assert orjson.loads(letter.value or b"")["error"]["type"] == "invalid_change"
    assert stage._partitions[0].next_offset == 4  # consumed: the offset moves past it


def test_eviction_spares_tasks_of_the_batch_and_tasks_with_open_windows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """At capacity, loading new memories forgets old ones, never one the batch at hand or an
    open window still needs (the batch looks its tasks up after the load)."""
    from processors.collapse import agents
    monkeypatch.setattr(agents, "MEMORY_CAPACITY", 3)
    stage = CollapseStage(load_settings(filters_enabled=False), Metrics.create(),
                          "postgresql://unused")
    state = PartitionState(PartitionWindows(5.0, 1.0))
    stage._partitions[0] = state
    for task in ("old-1", "in-batch", "open"):
        stage._memories[task] = TaskMemory()
    state.windows.add(decode(task_id="open"), stage._memories["open"], 0.0)
    stage._evict(2, {"in-batch"})
    assert set(stage._memories) == {"in-batch", "open"}
