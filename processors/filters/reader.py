"""The reference data a collapse process filters with, kept current.

Reads `box.definitions`, `jira.permissions` and `okr.links` (compacted: the last record per key
is the truth) from their start into a `ReferenceState`: `load()` reads every partition to its
end before the stage filters anything (the stage reports ready only afterwards), `refresh()`
applies what arrived since, without waiting, once per loop turn. The box flags boxsync keeps
itself (corrupted scope, waiting for a full sync: PostgreSQL `box_state`, written by the boxes
stage) are read incrementally by sequence number at most once per `FLAGS_POLL_SECONDS`.
A change to a box or a permission therefore takes effect within about a second.
A reference topic deleted and created again while the process runs (its incarnation changed,
processors.runtime.incarnations) is noticed within `CHECK_SECONDS`, and the whole state is
loaded again from the new topics: nothing of the old incarnation stays mixed in.

Records that do not decode are skipped here: the boxes stage, which reads the same topics,
dead-letters and counts them once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import orjson
import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from processors.filters.logic import BoxFlags, Directory
from processors.filters.reference import BadReference, ReferenceState
from processors.logs import event
from processors.runtime.incarnations import IncarnationWatch, admin_client, topic_ids
from processors.runtime.kafka import consumer_config, read_to_end, topic
from processors.settings import Settings
from processors.store import boxes
from schemas.reference import KeyResultLink
from schemas.topics import BOX_DEFINITIONS, JIRA_PERMISSIONS, OKR_LINKS

log = logging.getLogger("boxsync.filters")
REFERENCE_TOPICS = (BOX_DEFINITIONS, JIRA_PERMISSIONS, OKR_LINKS)
FLAGS_POLL_SECONDS = 1.0
LOAD_TIMEOUT_SECONDS = 120.0


class ReferenceLoadError(RuntimeError):
    """The reference topics could not be read to their end in time."""


class ReferenceReader:
    def __init__(self, settings: Settings, connect: Callable[[], psycopg.Connection],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.state = ReferenceState()
        self.flags: dict[str, BoxFlags] = {}
        self._settings = settings
        self._connect = connect
        self._clock = clock
        self._names = {topic(settings, spec): spec.name for spec in REFERENCE_TOPICS}
        self._consumer: Consumer | None = None
        self._admin = admin_client(settings)
        self._watch: IncarnationWatch | None = None
        self._flags_seq = 0
        self._flags_read_at = -FLAGS_POLL_SECONDS
        self._directory: Directory | None = None
        self._links: tuple[dict[str, list[KeyResultLink]], dict[str, list[KeyResultLink]]] \
            | None = None
        self.skipped = 0

    def load(self) -> None:
        """Read every reference partition from its start to its end, and the box flags
        (from scratch: a session restarted after an error reloads)."""
        self.close()
        self.state, self.flags, self._flags_seq = ReferenceState(), {}, 0
        self._directory, self._links = None, None
        ids = topic_ids(self._admin, self._names)
        self._watch = IncarnationWatch(lambda: topic_ids(self._admin, self._names), ids)
        consumer = Consumer(consumer_config(
            self._settings, f"{self._settings.topic_prefix}boxsync-reference-reader",
            **{"enable.partition.eof": True}))
        partitions = self._partitions(consumer)
        consumer.assign(partitions)
        self._consumer = consumer
        left = read_to_end(consumer, {(tp.topic, tp.partition) for tp in partitions},
                           self._apply, self._clock() + LOAD_TIMEOUT_SECONDS, self._clock)
        if left:
            raise ReferenceLoadError(f"reference topics not read to their end within "
                                     f"{LOAD_TIMEOUT_SECONDS:.0f}s: {sorted(left)}")
        self._read_flags(force=True)
        event(log, logging.INFO, "reference data loaded", boxes=len(self.state.boxes),
              grants=len(self.state.grants), links=len(self.state.links),
              flagged=sum(1 for f in self.flags.values() if f != BoxFlags()),
              skipped=self.skipped)

    def refresh(self) -> None:
        """Apply reference records and flag changes that arrived since the last call."""
        if self._watch is not None:
            changed = self._watch.changed(self._clock())
            if changed:
                event(log, logging.WARNING, "reference topic re-created; loading the "
                      "reference data again from the new incarnation",
                      topics=sorted(changed))
                self.load()
                return
        if self._consumer is not None:
            for message in self._consumer.consume(1000, 0):
                if message.error() is None:
                    self._apply(message)
        self._read_flags()

    def directory(self) -> Directory:
        """The boxes indexed for routing (rebuilt only after a change)."""
        if self._directory is None:
            self._directory = Directory(dict(self.state.boxes), dict(self.flags))
        return self._directory

    def key_results(self, task_id: str, box_ids: Iterable[str]) -> list[KeyResultLink]:
        """The key results that link the task directly or through one of the boxes (indexed
        once per reference change, not scanned per status change)."""
        if self._links is None:
            by_task: dict[str, list[KeyResultLink]] = {}
            by_box: dict[str, list[KeyResultLink]] = {}
            for link in self.state.links.values():
                for linked_task in link.task_ids:
                    by_task.setdefault(linked_task, []).append(link)
                for box_id in link.box_ids:
                    by_box.setdefault(box_id, []).append(link)
            self._links = by_task, by_box
        by_task, by_box = self._links
        return [*by_task.get(task_id, ()), *(link for box_id in box_ids
                                              for link in by_box.get(box_id, ()))]

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _partitions(self, consumer: Consumer) -> list[TopicPartition]:
        metadata = consumer.list_topics(timeout=15)
        partitions = []
        for name in self._names:
            found = metadata.topics.get(name)
            if found is None or found.error is not None:
                raise ReferenceLoadError(f"topic {name} does not exist; run `boxsync topics "
                                         f"create`")
            partitions += [TopicPartition(name, p, OFFSET_BEGINNING) for p in found.partitions]
        return partitions

    def _apply(self, message: Message) -> None:
        key = (message.key() or b"").decode("utf-8", "replace")
        raw = message.value()
        try:
            value = None if raw is None else orjson.loads(raw)
            if value is not None and not isinstance(value, dict):
                raise BadReference("not a JSON object")
            self.state.apply(self._names[message.topic() or ""], key, value)
        except (BadReference, orjson.JSONDecodeError):
            self.skipped += 1
            return
        self._directory, self._links = None, None

    def _read_flags(self, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._flags_read_at < FLAGS_POLL_SECONDS:
            return
        self._flags_read_at = now
        rows = boxes.box_flags_since(self._connect(), self._flags_seq)
        for box_id, corrupted, waiting, seq in rows:
            self.flags[box_id] = BoxFlags(corrupted, waiting)
            self._flags_seq = max(self._flags_seq, seq)
        if rows:
            self._directory = None
