"""Collapse wiring: `sync.changes` → `task.updates` and the PostgreSQL `tasks` cache.

Input: `sync.changes` (key: task id, ChangeEvent). Output: `task.updates` (key: task id,
TaskUpdate), `sync.deadletter` for a change that does not decode. Window: tumbling, per task,
`BOXSYNC_COLLAPSE_INTERVAL_SECONDS` on source time, closed by stream time plus
`BOXSYNC_GRACE_SECONDS`, stream time advancing with the wall clock while a partition is quiet.
Lateness: a change for a closed window joins the task's next update (processors.collapse.logic).
Duplicates: a change whose event id the task already applied from another record is counted
and dropped; each task's applied ids are kept with its row in `tasks` (the dedupe retention).
Filters (processors.collapse.filtering): permissions per change before its window, box routing
per closed window; reference data is read to its end before the first partition is taken.
OKR: `okr.updates` (key: key result id, KeyResultProgress) in the same transaction.

Delivery, exactly once on `task.updates`, idempotent in PostgreSQL:
- open windows live in memory; the committed offset of a partition never passes the first
  offset of its oldest open window, so re-reading after a crash rebuilds them;
- the commit metadata says since when windows are open; on assignment the stage reads the
  updates emitted since then from `task.updates` (same partition number: same key, same count,
  same partitioner) and skips re-read changes they already cover, so nothing is emitted twice;
- the cache write happens before the Kafka transaction commits and is idempotent.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import psycopg
from confluent_kafka import Consumer, Message, TopicPartition

from processors.collapse.filtering import CollapseFilters
from processors.collapse.logic import Arrival, Change, Emitted, PartitionWindows, TaskMemory
from processors.collapse.replay import emitted_event_ids
from processors.logs import event
from processors.metrics import Metrics, observe_all
from processors.runtime.kafka import topic
from processors.runtime.loop import Output
from processors.runtime.records import RawRecord, Rejected, dead_letter, raw_record
from processors.settings import Settings
from processors.store import db, tasks
from processors.wire import message_bytes
from schemas.topics import OKR_UPDATES, SYNC_CHANGES, SYNC_DEADLETTER, TASK_UPDATES

log = logging.getLogger("boxsync.collapse")
MEMORY_CAPACITY = 200_000


@dataclass
class PartitionState:
    windows: PartitionWindows
    next_offset: int | None = None
    # (task id, event id) of re-read changes that updates on task.updates already cover
    covered: set[tuple[str, str]] = field(default_factory=set)
    replay_until: int = 0


class CollapseStage:
    name = "collapse"

    def __init__(self, settings: Settings, metrics: Metrics, database_url: str) -> None:
        self._settings = settings
        self._metrics = metrics
        self._database_url = database_url
        self._input = topic(settings, SYNC_CHANGES)
        self._updates_topic = topic(settings, TASK_UPDATES)
        self._dead_topic = topic(settings, SYNC_DEADLETTER)
        self._partitions: dict[int, PartitionState] = {}
        self._memories: dict[str, TaskMemory] = {}
        self._conn: psycopg.Connection | None = None
        self._applied: list[tasks.AppliedWindow] = []
        self._emitted: list[Emitted] = []
        self._counts: Counter[tuple[str, str]] = Counter()
        self._now = 0.0
        self._filters = CollapseFilters(settings, self._connection, topic(settings, OKR_UPDATES))

    def prepare(self) -> None:
        """Before taking partitions: the reference data, read to its end."""
        self._filters.load()

    def topics(self) -> list[str]:
        return [self._input]

    def assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Each partition comes with its committed offset and metadata (the loop looked them
        # up, and blanked those of another incarnation of the topic).
        for tp in partitions:
            _, high = consumer.get_watermark_offsets(tp, timeout=15)
            covered = emitted_event_ids(self._settings, self._updates_topic, tp.partition,
                                        tp.metadata)
            self._partitions[tp.partition] = PartitionState(
                PartitionWindows(float(self._settings.collapse_interval_seconds),
                                 self._settings.grace_seconds,
                                 float(self._settings.dedupe_retention_seconds)),
                covered=covered, replay_until=high)
            event(log, logging.INFO, "partition assigned", topic=self._input,
                  partition=tp.partition, committed=tp.offset, already_emitted=len(covered))

    def revoked(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._partitions.pop(tp.partition, None)
        # Another worker may now change these tasks; re-read their memory when they return.
        self._memories.clear()

    def handle(self, messages: Sequence[Message], now: float) -> list[Output]:
        outputs: list[Output] = []
        parsed: list[tuple[PartitionState, Change]] = []
        memories = self._memories
        unknown: set[str] = set()  # tasks whose memory is not loaded yet
        for message in messages:
            state = self._partitions.get(message.partition() or 0)
            if state is None:
                continue
            offset = message.offset() or 0
            state.next_offset = offset + 1
            try:
                change = Change.decode(message.value() or b"", offset)
            except ValueError as exc:
                outputs.append(self._dead_letter(raw_record(message, SYNC_CHANGES.name), exc,
                                                 now))
                continue
            parsed.append((state, change))
            if change.task_id not in memories:
                unknown.add(change.task_id)
        self._ensure_memories(unknown, parsed)
        for state, change in parsed:
            if state.covered:
                if (change.task_id, change.event_id) in state.covered:
                    state.windows.observe(change.at, now)
                    continue
                if change.offset + 1 >= state.replay_until:
                    state.covered = set()
            memory = memories[change.task_id]
            if not self._filters.permits(change, memory):
                state.windows.observe(change.at, now)
                continue
            arrival = state.windows.add(change, memory, now)
            if arrival is not Arrival.ON_TIME:
                self._counts[(arrival.value, change.source)] += 1
        return outputs + self._close(now)

    def tick(self, now: float) -> list[Output]:
        # Every loop turn, busy or quiet: new reference records and box flags apply to the
        # windows closing now and to the next batch's changes.
        self._filters.refresh()
        return self._close(now)

    def offsets(self) -> list[TopicPartition]:
        offsets = []
        for partition, state in self._partitions.items():
            if state.next_offset is None:
                continue
            offset, open_since = state.windows.commit_point(state.next_offset)
            metadata = orjson.dumps({"open_since": open_since}).decode() if open_since else ""
            offsets.append(TopicPartition(self._input, partition, offset, metadata=metadata))
        return offsets

    def persist(self, outputs: list[Output]) -> None:
        """Write the cache, then add the OKR progress it implies to this batch's outputs."""
        if self._applied:
            tasks.apply_updates(self._connection(), self._applied)
            outputs += self._filters.okr_outputs(self._connection(), self._now)

    def committed(self, outputs: list[Output], now: float) -> None:
        metrics = self._metrics
        for reason, count in self._filters.filtered.items():
            metrics.updates_filtered.labels(reason).inc(count)
        metrics.okr_updates.inc(sum(1 for o in outputs if o.topic == self._filters.okr_topic))
        # Summed first: a labelled counter's inc costs a lock and a lookup, per call.
        closed: Counter[str] = Counter()
        dropped: Counter[str] = Counter()
        ops: Counter[str] = Counter()
        ratios: list[float] = []
        delays: list[float] = []
        for emitted in self._emitted:
            if emitted.update is None:
                dropped[emitted.dropped_reason or "stale"] += 1
                closed["dropped"] += emitted.collapsed
            elif not emitted.delivered:
                closed["filtered"] += emitted.collapsed
            else:
                closed["emitted"] += emitted.collapsed
                ops[emitted.update["op"]] += 1
                ratios.append(emitted.collapsed)
                delays.append(emitted.emit_delay)
        observe_all(metrics.collapse_ratio, ratios)
        observe_all(metrics.emit_delay, delays)
        for reason, count in dropped.items():
            metrics.updates_filtered.labels(reason).inc(count)
        for outcome, count in closed.items():
            metrics.changes_closed.labels(outcome).inc(count)
        for op, count in ops.items():
            metrics.task_updates_emitted.labels("partial", op).inc(count)
        for (kind, label), count in self._counts.items():
            if kind == Arrival.LATE:
                metrics.events_late.labels(label).inc(count)
            elif kind == Arrival.DUPLICATE:
                metrics.events_duplicate.labels(label).inc(count)
            else:
                metrics.events_dead_lettered.labels("internal", label).inc(count)
        metrics.open_windows.set(sum(len(s.windows.windows) for s in self._partitions.values()))
        self._applied.clear()
        self._emitted.clear()
        self._counts.clear()
        self._filters.reset()

    def reset(self) -> None:
        self._partitions.clear()
        self._memories.clear()
        self._applied.clear()
        self._emitted.clear()
        self._counts.clear()
        self._filters.reset()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _close(self, now: float) -> list[Output]:
        self._now = now
        outputs = []
        for state in self._partitions.values():
            for emitted in state.windows.close_due(self._memories, now):
                self._emitted.append(emitted)
                if emitted.update is None:
                    continue
                update = emitted.update
                memory = self._memories[update["task_id"]]
                delivered = self._filters.route(update, memory)
                # The cache follows the task whether or not a box takes the update.
                self._applied.append(tasks.AppliedWindow(update, emitted.field_times,
                                                         emitted.window_end, emitted.recent,
                                                         memory.box_ids, emitted.recent_whole))
                if not delivered:
                    emitted.delivered = False
                    continue
                outputs.append(Output(self._updates_topic, update["task_id"].encode(),
                                      message_bytes(update)))
        return outputs

    def _ensure_memories(self, missing: set[str],
                         batch: list[tuple[PartitionState, Change]]) -> None:
        if not missing:
            return
        # A generator: the batch's tasks are gathered only when the capacity is reached.
        self._evict(len(missing), (change.task_id for _, change in batch))
        loaded = tasks.load_memories(self._connection(), missing)
        for task_id in missing:
            self._memories[task_id] = loaded.get(task_id) or TaskMemory()

    def _evict(self, room: int, batch_tasks: Iterable[str]) -> None:
        """Forget the oldest memories of tasks without open windows (they are in PostgreSQL)
        and not in the batch at hand."""
        excess = len(self._memories) + room - MEMORY_CAPACITY
        if excess <= 0:
            return
        busy = {task for s in self._partitions.values() for task, _ in s.windows.windows}
        busy.update(batch_tasks)
        for task_id in [t for t in self._memories if t not in busy][:excess]:
            del self._memories[task_id]

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self._database_url, autocommit=True)
        return self._conn

    def _dead_letter(self, record: RawRecord, exc: Exception, now: float) -> Output:
        reason = Rejected("invalid_change", f"{type(exc).__name__}: {exc}")
        self._counts[("dead", reason.reason)] += 1
        letter = dead_letter(record, reason, self.name, datetime.fromtimestamp(now, tz=UTC))
        return Output(self._dead_topic, record.key, message_bytes(letter))
