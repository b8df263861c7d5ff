"""The dedupe key is site + delivery id (issue 18 §4): Jira's `X-Atlassian-Webhook-Identifier`
is unique within one site only. Each task remembers the ids it applied (the task id names the
site); the collapse's replay scan, which looks across every task of a partition, keys by
(task id, event id) too."""

from __future__ import annotations

from typing import Any

import orjson
from confluent_kafka import TopicPartition

from processors.collapse.replay import _read_event_ids
from processors.ingest.logic import Accepted, IngestConfig, RawRecord, ingest
from tests.support import jira_bodies as jb

DELIVERY = b"b2f7c7a4-5a8e-4a57-9c8e-2d1f0f6a1c11"


def change_of(site: str) -> dict[str, Any]:
    body = jb.updated(1_790_000_000_000, jb.user("557058:ada", "Ada"),
                      jb.issue(site, "10001", "OPS-1", summary="x"), 1,
                      [jb.item("summary", "x")])
    record = RawRecord(topic="jira.events", partition=0, offset=1, key=b"OPS-1",
                       value=orjson.dumps(body),
                       headers={"x-atlassian-webhook-identifier": DELIVERY})
    result = ingest(record, IngestConfig())
    assert isinstance(result, Accepted), result
    return result.change


class _Message:
    def __init__(self, value: dict[str, Any]) -> None:
        self._value = orjson.dumps(value)

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value


class _Reader:
    """What _read_event_ids asks of a consumer: one batch, then the end."""

    def __init__(self, updates: list[dict[str, Any]]) -> None:
        self._batches = [[_Message(u) for u in updates]]

    def consume(self, count: int, timeout: float) -> list[_Message]:
        return self._batches.pop(0) if self._batches else []

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(p.topic, p.partition, 10) for p in partitions]


def test_the_same_delivery_id_on_two_sites_is_two_changes_of_two_tasks() -> None:
    one, other = change_of("acme.atlassian.net"), change_of("globex.atlassian.net")
    assert one["event_id"] == other["event_id"] == DELIVERY.decode()
    assert one["task_id"] != other["task_id"]


def test_the_replay_scan_covers_a_delivery_id_for_its_own_task_only() -> None:
    emitted = change_of("acme.atlassian.net")
    update = {"sync_type": "partial", "task_id": emitted["task_id"],
              "event_ids": [emitted["event_id"]]}
    covered = _read_event_ids(_Reader([update]), TopicPartition("t", 0), 10)  # type: ignore[arg-type]
    other = change_of("globex.atlassian.net")
    assert (emitted["task_id"], emitted["event_id"]) in covered
    assert (other["task_id"], other["event_id"]) not in covered
