"""Ingest wiring: raw upstream records → `sync.changes` (keyed by task id) or `sync.deadletter`.

Input: `jira.events`, `trello.events` (raw bodies, any key). Output: `sync.changes` (key: task
id, value: ChangeEvent JSON), `sync.reference` (key: `<entity>:<site>:<id>`, value:
ReferenceEvent) and `sync.deadletter` (key: the original key, value: DeadLetter).
No window, no state beyond the batch. Delivery: exactly once into the output topics (outputs
and input offsets share one Kafka transaction, see processors.runtime.loop); every record ends
as a change, a counted pass-over or a dead letter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import psycopg
from confluent_kafka import Consumer, Message, TopicPartition

from processors.ingest import jira, trello
from processors.ingest.logic import (
    Accepted,
    IngestConfig,
    PassedOver,
    RawRecord,
    Reference,
    Rejected,
    ingest,
)
from processors.metrics import Metrics
from processors.runtime.incarnations import admin_client, topic_ids
from processors.runtime.kafka import topic
from processors.runtime.loop import Output
from processors.runtime.records import dead_letter, raw_record
from processors.settings import Settings
from processors.store import db, tasks
from processors.wire import message_bytes
from schemas.topics import (
    JIRA_EVENTS,
    SYNC_CHANGES,
    SYNC_DEADLETTER,
    SYNC_REFERENCE,
    TRELLO_EVENTS,
)

_SOURCES = {JIRA_EVENTS.name: "jira", TRELLO_EVENTS.name: "trello"}
_KNOWN_EVENTS = jira.KNOWN_EVENTS | set(trello.CARD_ACTION_KINDS) | set(trello.BOARD_ACTIONS)


def _event_label(event: str) -> str:
    """The `event` label of a record boxsync passed over or read as reference data: its
    name when upstream-formats lists it, else `other` (a body names any event it likes, and
    every name would have become a label value of its own)."""
    return event if event in _KNOWN_EVENTS else "other"


class IngestStage:
    name = "ingest"

    def __init__(self, settings: Settings, metrics: Metrics,
                 database_url: str | None = None) -> None:
        self._metrics = metrics
        self._database_url = database_url
        self._conn: psycopg.Connection | None = None
        self._config = IngestConfig(max_event_bytes=settings.max_event_bytes,
                                    default_jira_site=settings.jira_site,
                                    field_map=dict(settings.jira_field_map),
                                    integration_account_id=settings.jira_integration_account_id)
        self._inputs = {topic(settings, spec): spec.name for spec in (JIRA_EVENTS, TRELLO_EVENTS)}
        self._changes_topic = topic(settings, SYNC_CHANGES)
        self._dead_topic = topic(settings, SYNC_DEADLETTER)
        self._reference_topic = topic(settings, SYNC_REFERENCE)
        self._positions: dict[tuple[str, int], int] = {}
        self._admin = admin_client(settings)
        self._topic_ids: dict[str, str] = {}
        # Counted when the batch commits, so a re-read batch is not counted twice.
        self._pending: Counter[tuple[str, str, str]] = Counter()

    def prepare(self) -> None:
        """The ids of the raw topics' incarnations, which each change's origin names."""
        self._topic_ids = topic_ids(self._admin, self._inputs)

    def topics(self) -> list[str]:
        return list(self._inputs)

    def assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        pass

    def revoked(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._positions.pop((tp.topic, tp.partition), None)

    def handle(self, messages: Sequence[Message], now: float) -> list[Output]:
        outputs: list[Output] = []
        moment = datetime.fromtimestamp(now, tz=UTC)
        changes_topic, config, inputs = self._changes_topic, self._config, self._inputs
        positions, ids = self._positions, self._topic_ids
        accepted: dict[tuple[str, str], int] = {}  # the usual outcome, counted cheaply
        for message in messages:
            topic_name = message.topic() or ""
            record = raw_record(message, inputs[topic_name], ids.get(topic_name))
            source = _SOURCES[record.topic]
            # Where the partition resumes, whatever becomes of this record below.
            positions[(topic_name, record.partition)] = record.offset + 1
            try:
                result = ingest(record, config)
                if isinstance(result, Rejected) and result.reason == "unknown_site":
                    result = self._with_cached_site(record, result)
                if isinstance(result, Accepted):
                    output = Output(changes_topic, result.task_id.encode(),
                                    message_bytes(result.change))
                elif isinstance(result, Reference):
                    output = Output(self._reference_topic, result.key.encode(),
                                    message_bytes(result.event_body))
            except psycopg.Error:
                raise  # the cached-site lookup: the database is away, retry the batch
            except Exception as exc:
                # One body must never stop its partition: an error here would end the session
                # and the re-read would meet the same body again, for good (make chaos found
                # RecursionError, UnicodeEncodeError and OverflowError so).
                result = Rejected("internal_error", f"{type(exc).__name__}: {str(exc)[:200]}")
            if isinstance(result, Accepted):
                outputs.append(output)
                key = (source, result.event)
                accepted[key] = accepted.get(key, 0) + 1
                if result.sanitized:
                    self._pending[("sanitized", source, "")] += 1
                if "likely_echo" in result.change:
                    self._pending[("likely_echo", source, "")] += 1
            elif isinstance(result, Reference):
                outputs.append(output)
                self._pending[("consumed", source, _event_label(result.event))] += 1
            elif isinstance(result, PassedOver):
                self._pending[("consumed", source, _event_label(result.event))] += 1
                self._pending[("passed_over", source, result.reason)] += 1
            else:
                letter = dead_letter(record, result, self.name, moment)
                outputs.append(Output(self._dead_topic, record.key, message_bytes(letter),
                                      [("x-boxsync-error", result.reason.encode())]))
                self._pending[("consumed", source, "undecodable")] += 1
                self._pending[("dead_lettered", source, result.reason)] += 1
        for (source, event), count in accepted.items():
            self._pending[("consumed", source, event)] += count
        return outputs

    def _with_cached_site(self, record: RawRecord, rejected: Rejected
                          ) -> Accepted | Reference | PassedOver | Rejected:
        """Contract §2's last fallback: the one cached site that has this issue id."""
        if rejected.issue_id is None or self._database_url is None:
            return rejected
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self._database_url, autocommit=True)
        sites = tasks.sites_of_issue(self._conn, rejected.issue_id)
        if len(sites) != 1:
            return rejected
        record.headers = {**record.headers, "x-jira-site": sites[0].encode()}
        return ingest(record, self._config)

    def tick(self, now: float) -> list[Output]:
        return []

    def offsets(self) -> list[TopicPartition]:
        return [TopicPartition(t, p, offset) for (t, p), offset in self._positions.items()]

    def persist(self, outputs: list[Output]) -> None:
        pass

    def committed(self, outputs: list[Output], now: float) -> None:
        counters = {"consumed": self._metrics.events_consumed,
                    "passed_over": self._metrics.events_passed_over,
                    "dead_lettered": self._metrics.events_dead_lettered}
        for (kind, source, label), count in self._pending.items():
            if kind == "sanitized":
                self._metrics.text_sanitized.labels(source).inc(count)
            elif kind == "likely_echo":
                self._metrics.likely_echoes.labels(source).inc(count)
            else:
                counters[kind].labels(source, label).inc(count)
        self._pending.clear()

    def reset(self) -> None:
        self._positions.clear()
        self._pending.clear()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
