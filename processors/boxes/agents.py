"""Boxes wiring: reference data, corrupted-scope warnings and commands → PostgreSQL and
`sync.status`.

Input: `box.definitions`, `jira.permissions`, `okr.links` (compacted; key per contract §3; a
null value deletes), `sync.reference` (ReferenceEvent: Jira project events, Trello board
events), `sync.commands` (SyncCommand). Output: PostgreSQL `reference_records`, `box_state`,
`box_warnings`, `command_log`; `sync.status` (key: box id, SyncStatus) for flagged boxes and
handled commands; `sync.deadletter` for records that do not decode. No window.

Delivery: each batch's database writes commit in one transaction before its outputs and
offsets commit in one Kafka transaction; every write is idempotent (newer-record guard,
warnings keyed by cause, commands by id, a handled command's statuses published again as
they were), so a replay after a crash changes nothing twice and emits nothing twice.
Incarnations (processors.runtime.incarnations): reference rows, warning causes and command
origins name the incarnation of the topic they came from. At start, a reference topic whose
stored rows came from another incarnation (it was deleted and created again, or the tenant
was restored elsewhere) is read whole and its view replaced in one transaction.
The collapse processes read the same reference topics themselves (processors.filters.reader);
this stage keeps what boxsync adds: warnings, flags, the audit log.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from confluent_kafka import Consumer, Message, TopicPartition

from processors.boxes.commands import CommandHandler
from processors.boxes.logic import (
    BoxWarning,
    scope_subject,
    status_key,
    sync_status,
    warnings_for_event,
    warnings_for_revoked_grant,
)
from processors.boxes.rebuild import latest_records, valid_rows
from processors.filters.reference import BadReference, ReferenceState
from processors.logs import event
from processors.metrics import Metrics
from processors.runtime.incarnations import admin_client, topic_ids
from processors.runtime.kafka import topic
from processors.runtime.loop import Output
from processors.runtime.origins import origin as record_origin
from processors.runtime.records import Rejected, dead_letter, raw_record
from processors.settings import Settings
from processors.store import boxes, db
from processors.sync.queueing import queue_sync_run
from processors.wire import iso_utc, message_bytes
from schemas.topics import (
    BOX_DEFINITIONS,
    JIRA_PERMISSIONS,
    OKR_LINKS,
    SYNC_COMMANDS,
    SYNC_DEADLETTER,
    SYNC_REFERENCE,
    SYNC_STATUS,
)

log = logging.getLogger("boxsync.boxes")
_REFERENCE = (BOX_DEFINITIONS, JIRA_PERMISSIONS, OKR_LINKS)


class BoxesStage:
    name = "boxes"

    def __init__(self, settings: Settings, metrics: Metrics, database_url: str) -> None:
        self._settings = settings
        self._metrics = metrics
        self._database_url = database_url
        self._names = {topic(settings, spec): spec.name
                       for spec in (*_REFERENCE, SYNC_REFERENCE, SYNC_COMMANDS)}
        self._status_topic = topic(settings, SYNC_STATUS)
        self._dead_topic = topic(settings, SYNC_DEADLETTER)
        self._conn: psycopg.Connection | None = None
        self._admin = admin_client(settings)
        self._ids: dict[str, str] = {}  # registry name → id of the topic's incarnation
        self._next: dict[tuple[str, int], int] = {}
        self._dead: Counter[str] = Counter()
        self._commands = CommandHandler(settings, metrics, functools.partial(
            queue_sync_run, tenant=settings.topic_prefix))

    def prepare(self) -> None:
        """Learn the topics' incarnations; rebuild the view of a re-created reference topic.
        Every decision reads PostgreSQL: nothing else to load."""
        ids = topic_ids(self._admin, self._names)
        self._ids = {self._names[full]: topic_id for full, topic_id in ids.items()}
        conn = self._connection()
        for spec in _REFERENCE:
            current = self._ids[spec.name]
            stored = boxes.reference_incarnations(conn, spec.name)
            if stored - {current, ""}:
                self._rebuild(conn, spec.name, topic(self._settings, spec), current, stored)
            elif "" in stored:
                boxes.adopt_incarnation(conn, spec.name, current)

    def _rebuild(self, conn: psycopg.Connection, name: str, full_name: str, current: str,
                 stored: set[str]) -> None:
        rows, invalid = valid_rows(name, latest_records(self._settings, full_name))
        dropped, refused = boxes.replace_reference_topic(conn, name, current, rows)
        if name == BOX_DEFINITIONS.name:
            for row in rows:
                if row.value is not None:
                    boxes.ensure_box_state(conn, row.key)
        event(log, logging.WARNING, "reference topic re-created: its view was rebuilt from "
              "the new incarnation", topic=full_name, topic_id=current,
              previous_topic_ids=sorted(stored - {current, ""}), rows_before=dropped,
              rows_now=len(rows) - refused, invalid=invalid + refused)

    def topics(self) -> list[str]:
        return list(self._names)

    def assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        event(log, logging.INFO, "partitions assigned", stage=self.name,
              partitions=[f"{tp.topic}:{tp.partition}" for tp in partitions])

    def revoked(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._next.pop((tp.topic, tp.partition), None)

    def handle(self, messages: Sequence[Message], now: float) -> list[Output]:
        outputs: list[Output] = []
        at = iso_utc(datetime.fromtimestamp(now, tz=UTC))
        conn = self._connection()
        with conn.transaction():
            for message in messages:
                name = self._names[message.topic() or ""]
                self._next[(message.topic() or "", message.partition() or 0)] = \
                    (message.offset() or 0) + 1
                try:
                    # A savepoint per record: one the database refuses (a NUL in a name is
                    # not storable in jsonb) is dead-lettered instead of failing the batch
                    # forever.
                    with conn.transaction():
                        outputs += self._dispatch(conn, name, message, now, at)
                except (BadReference, ValueError, TypeError, KeyError, psycopg.DataError) as exc:
                    outputs.append(self._dead_letter(message, name, exc, now))
        return outputs

    def tick(self, now: float) -> list[Output]:
        return []

    def offsets(self) -> list[TopicPartition]:
        return [TopicPartition(name, partition, offset)
                for (name, partition), offset in self._next.items()]

    def persist(self, outputs: list[Output]) -> None:
        """Nothing left: `handle` committed the batch's database writes."""

    def committed(self, outputs: list[Output], now: float) -> None:
        for reason, count in self._dead.items():
            self._metrics.events_dead_lettered.labels("boxes", reason).inc(count)
        self._dead.clear()
        self._commands.committed(self._connection())

    def reset(self) -> None:
        self._next.clear()
        self._dead.clear()
        self._commands.reset()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _dispatch(self, conn: psycopg.Connection, name: str, message: Message, now: float,
                  at: str) -> list[Output]:
        key = (message.key() or b"").decode("utf-8", "strict")
        raw = message.value()
        value = None if raw is None else orjson.loads(raw)
        if value is not None and not isinstance(value, dict):
            raise BadReference("the value is not a JSON object")
        if name == SYNC_COMMANDS.name:
            if value is None:
                raise BadReference("a command cannot be a tombstone")
            origin = record_origin(name, self._ids.get(name), message.partition(),
                                   message.offset())
            return self._outputs(self._commands.handle(conn, value, origin, now, at))
        if name == SYNC_REFERENCE.name:
            if value is None:
                raise BadReference("a reference event cannot be a tombstone")
            return self._outputs(self._reference_event(conn, value, at))
        return self._outputs(self._reference_record(conn, name, key, value, message, at))

    def _reference_record(self, conn: psycopg.Connection, name: str, key: str,
                          value: dict[str, Any] | None, message: Message, at: str
                          ) -> list[dict[str, Any]]:
        ReferenceState().apply(name, key, value)  # validates: BadReference when invalid
        boxes.upsert_reference(conn, name, key, value, self._ids.get(name, ""),
                               message.partition() or 0, message.offset() or 0)
        if name == BOX_DEFINITIONS.name and value is not None:
            boxes.ensure_box_state(conn, key)
        if name == JIRA_PERMISSIONS.name and value is None:
            user_id, _, project = key.partition("|")
            cause = record_origin(name, self._ids.get(name), message.partition(),
                                  message.offset())
            found = warnings_for_revoked_grant(user_id, project, cause,
                                               boxes.boxes_naming(conn, project))
            return self._raise(conn, found, at)
        return []

    def _reference_event(self, conn: psycopg.Connection, value: dict[str, Any], at: str
                         ) -> list[dict[str, Any]]:
        subject = scope_subject(value)
        if subject is None:
            return []
        return self._raise(conn, warnings_for_event(value, boxes.boxes_naming(conn, subject)), at)

    def _raise(self, conn: psycopg.Connection, warnings: list[BoxWarning], at: str
               ) -> list[dict[str, Any]]:
        statuses = []
        for warning in warnings:
            if boxes.raise_warning(conn, warning.box_id, warning.cause_id, warning.kind,
                                   warning.message):
                event(log, logging.WARNING, "box scope corrupted", box_id=warning.box_id,
                      cause=warning.kind, detail=warning.message)
                statuses.append(sync_status(warning.box_id, "flagged", at,
                                            reason="corrupted_scope"))
        return statuses

    def _outputs(self, statuses: list[dict[str, Any]]) -> list[Output]:
        return [Output(self._status_topic, status_key(status).encode(), message_bytes(status))
                for status in statuses]

    def _dead_letter(self, message: Message, name: str, exc: Exception, now: float) -> Output:
        reason = "invalid_command" if name == SYNC_COMMANDS.name else "invalid_reference"
        self._dead[reason] += 1
        record = raw_record(message, name)
        letter = dead_letter(record, Rejected(reason, f"{type(exc).__name__}: {exc}"),
                             self.name, datetime.fromtimestamp(now, tz=UTC))
        return Output(self._dead_topic, record.key, message_bytes(letter))

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self._database_url, autocommit=True)
        return self._conn
