"""Tenant schemas (processors.store.tenancy) and topic incarnations
(processors.runtime.incarnations, processors.runtime.origins): pure logic, no broker."""

from __future__ import annotations

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from processors.collapse.logic import Arrival, Change, PartitionWindows, TaskMemory
from processors.errors import UnavailableError
from processors.runtime.incarnations import IncarnationWatch, resume_positions, stamp
from processors.runtime.origins import origin, same_record
from processors.settings import SettingsError, load_settings
from processors.store.tenancy import (
    IDENTIFIER,
    schema_for,
    schema_for_prefix,
    schema_of,
    with_schema,
)


def test_the_empty_prefix_keeps_public_and_others_get_a_schema_of_their_own() -> None:
    assert schema_for_prefix("") == "public"
    names = {schema_for_prefix(p) for p in ("acme.", "acme-", "acme_", "ACME.", "t1.", "t2.")}
    assert len(names) == 6  # a hash of the exact prefix keeps look-alikes apart
    assert schema_for_prefix("acme.").startswith("boxsync_acme_")
    for prefix in ("acme.", "x" * 300, "ünïcode.", "...", "1-2-3"):
        assert IDENTIFIER.match(schema_for_prefix(prefix)), prefix


def test_database_schema_overrides_and_is_validated() -> None:
    assert schema_for(load_settings(topic_prefix="acme.", database_schema="tenant_a")) \
        == "tenant_a"
    with pytest.raises(SettingsError, match="BOXSYNC_DATABASE_SCHEMA"):
        load_settings(database_schema="Robert'); DROP TABLE tasks;--")


def test_with_schema_replaces_only_the_search_path() -> None:
    url = "postgresql://u@h:5432/db?options=-c%20statement_timeout%3D5000"
    tenant = with_schema(url, "boxsync_a_12345678")
    assert schema_of(tenant) == "boxsync_a_12345678"
    assert "statement_timeout" in tenant
    again = with_schema(tenant, "boxsync_b_12345678")
    assert schema_of(again) == "boxsync_b_12345678" and "boxsync_a" not in again
    assert schema_of(url) == "public"
    with pytest.raises(ValueError):
        with_schema(url, "bad name")


def test_origins_of_two_incarnations_differ_and_unstamped_ones_match_their_coordinates() -> None:
    old, new = origin("jira.events", "id-1", 0, 5), origin("jira.events", "id-2", 0, 5)
    assert old != new and not same_record(old, new)
    assert same_record(old, old)
    assert same_record("jira.events:0:5", new)  # stored before ids were kept
    assert not same_record("jira.events:0:6", new)
    assert not same_record(new, "jira.events:0:5")


def test_committed_offsets_carry_the_topic_id_next_to_the_stage_metadata() -> None:
    ids = {"sync.changes": "id-1"}
    stamped = stamp(TopicPartition("sync.changes", 0, 42, metadata='{"open_since": 1.5}'), ids)
    assert orjson.loads(stamped.metadata or "") == {"open_since": 1.5, "topic_id": "id-1"}
    assert stamped.offset == 42
    plain = stamp(TopicPartition("sync.changes", 1, 7), ids)
    assert orjson.loads(plain.metadata or "") == {"topic_id": "id-1"}
    assert stamp(TopicPartition("other", 0, 1), ids).metadata is None


def test_an_offset_of_another_incarnation_is_not_resumed_from() -> None:
    ids = {"t": "now"}
    committed = [TopicPartition("t", 0, 50, metadata='{"topic_id": "before"}'),
                 TopicPartition("t", 1, 60, metadata='{"topic_id": "now"}'),
                 TopicPartition("t", 2, 70, metadata=""),  # committed before ids were kept
                 TopicPartition("t", 3, 80, metadata="not json")]
    positions, stale = resume_positions(committed, ids)
    assert [tp.offset for tp in positions] == [OFFSET_BEGINNING, 60, 70, 80]
    assert [(tp.partition, was) for tp, was in stale] == [(0, "before")]


def test_the_watch_asks_once_per_interval_and_names_what_changed() -> None:
    answers = [{"a": "1", "b": "2"}, {"a": "1", "b": "3"}]
    calls: list[int] = []

    def fetch() -> dict[str, str]:
        calls.append(1)
        return answers.pop(0)

    watch = IncarnationWatch(fetch, {"a": "1", "b": "2"}, every=10)
    assert watch.changed(100.0) == {}
    assert watch.changed(105.0) == {} and len(calls) == 1
    assert watch.changed(111.0) == {"b": ("2", "3")}


def test_a_topic_missing_for_a_moment_is_no_change() -> None:
    def fetch() -> dict[str, str]:
        raise UnavailableError("gone")

    assert IncarnationWatch(fetch, {"a": "1"}, every=0).changed(1.0) == {}


def _change(topic_id: str | None, offset: int) -> Change:
    body = {"event_id": "e-1", "task_id": "jira:s:1", "source": "jira", "kind": "updated",
            "occurred_at": "2026-12-04T10:00:01.000Z", "author": {"kind": "user", "id": "u"},
            "changes": {"summary": "x"},
            "origin": {"topic": "jira.events", "partition": 0, "offset": 5,
                       **({"topic_id": topic_id} if topic_id else {})}}
    return Change.decode(orjson.dumps(body), offset)


def test_a_body_resent_into_a_recreated_topic_is_a_duplicate_not_a_reread() -> None:
    first = _change("id-1", 0)
    assert first.origin == "jira.events@id-1:0:5"
    memory = TaskMemory()
    memory.recent[first.event_id] = (first.at, first.origin)
    windows = PartitionWindows(5.0, 1.0, 3600.0)
    # The same record read again (a restart): it joins its window again.
    assert windows.add(_change("id-1", 0), memory, 0.0) is not Arrival.DUPLICATE
    # The same event id at the same coordinates of a new incarnation: a second delivery.
    fresh = PartitionWindows(5.0, 1.0, 3600.0)
    assert fresh.add(_change("id-2", 1), memory, 0.0) is Arrival.DUPLICATE
