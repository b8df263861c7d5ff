"""A transactional consume → transform → produce loop on confluent-kafka.

Each hot-path stage process (ingest, collapse; see processors.runtime.stage_process) runs one
of these. Per batch: consume up to `batch_size` records, let the stage turn them into outputs,
make the stage's side effects durable (`persist`, e.g. the PostgreSQL cache, idempotent), then
publish the outputs and commit the input offsets in one Kafka transaction. A kill -9 anywhere leaves
either the whole batch committed or none of it; the re-read batch gives the same outputs.

Any unexpected error ends the session: the open transaction is aborted, the stage drops its
in-memory state, and a new session re-reads from the committed offsets after a back-off.

Offsets are committed with the id of their topic's incarnation in their metadata; an offset
committed for another incarnation (the topic was deleted and created again, or restored on
another cluster) is not resumed from: that partition is read from its start. A topic
re-created while the session runs ends the session (processors.runtime.incarnations).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import msgspec
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from processors.errors import TopicRecreatedError
from processors.logs import event
from processors.runtime.incarnations import IncarnationWatch, resume_positions, stamp
from processors.runtime.kafka import produce
from processors.runtime.progress import LagTracker, Throughput

log = logging.getLogger("boxsync.loop")
# librdkafka can block in a transactional call far past the call's own timeout once the group
# coordinator went away: send_offsets_to_transaction never checks its timeout while it waits
# for a coordinator (confluentinc/librdkafka#5456, #5511). `make chaos` saw ingest and collapse
# wait in it for good after a broker restart. Such a call cannot be interrupted, so the stage
# process ends itself when one runs this long past its own timeout
# (processors.runtime.stage_process) and the worker starts it again; the new producer fences
# the old transaction.
HUNG_MARGIN_SECONDS = 15.0


# A msgspec struct: one is built per produced record (in C, and untracked by the cycle
# collector, which a batch of 10,000 would otherwise trigger).
class Output(msgspec.Struct, gc=False):
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, str | bytes | None]] | None = None


class Stage(Protocol):
    name: str

    def prepare(self) -> None: ...
    def topics(self) -> list[str]: ...
    def assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None: ...
    def revoked(self, partitions: list[TopicPartition]) -> None: ...
    def handle(self, messages: Sequence[Message], now: float) -> list[Output]: ...
    def tick(self, now: float) -> list[Output]: ...
    def offsets(self) -> list[TopicPartition]: ...
    def persist(self, outputs: list[Output]) -> None: ...
    def committed(self, outputs: list[Output], now: float) -> None: ...
    def reset(self) -> None: ...


class TransactionalLoop:
    def __init__(self, stage: Stage, consumer_config: dict[str, Any],
                 producer_config: dict[str, Any], *, on_error: Callable[[str], None],
                 on_batch: Callable[[str, int], None] | None = None,
                 clock: Callable[[], float] = time.time, batch_size: int = 5000,
                 poll_timeout: float = 0.2, linger: float = 0.1,
                 backoff: float = 2.0,
                 topic_ids: Callable[[list[str]], dict[str, str]] | None = None,
                 lag: LagTracker | None = None,
                 throughput: Throughput | None = None) -> None:
        self.stage = stage
        self._consumer_config = consumer_config
        self._producer_config = producer_config
        self._on_error = on_error
        self._on_batch = on_batch
        self._clock = clock
        # 5,000 rather than 10,000: a batch's records, decoded values and outputs are what a
        # stage process holds at its peak; measured in `make bench`, the worker's peak RSS
        # went from 753 to 676 MiB with the same CPU per event (twice the transactions, each
        # still thousands of records).
        self._batch_size = batch_size
        self._poll_timeout = poll_timeout
        self._linger = linger
        self._backoff = backoff
        # Topic name → id of its incarnation (processors.runtime.incarnations.topic_ids);
        # None: offsets are committed unstamped (unit tests without a broker).
        self._topic_ids = topic_ids
        self._lag = lag  # boxsync_consumer_lag_records, from this loop's own positions
        self._throughput = throughput  # boxsync_stage_records_per_second
        self.last_beat = 0.0  # wall time of the last completed iteration (for /readyz)
        self.assigned_once = False
        # Called once, after the stage has prepared and before the consumer subscribes (the
        # stage processes use it to join their group together).
        self.gate: Callable[[], None] | None = None
        # Monotonic time by which the transactional call in progress should have returned.
        self._due_by: float | None = None

    def hung_for(self, now: float | None = None) -> float:
        """Seconds the transactional call in progress has run past its own timeout (0 when
        none, or still within it)."""
        due_by = self._due_by
        if due_by is None:
            return 0.0
        return max(0.0, (time.monotonic() if now is None else now) - due_by)

    @contextlib.contextmanager
    def _blocking(self, timeout: float) -> Iterator[None]:
        self._due_by = time.monotonic() + timeout
        try:
            yield
        finally:
            self._due_by = None

    def run(self, stop: threading.Event) -> None:
        """Run sessions until `stop` is set; an error restarts the session after a back-off."""
        while not stop.is_set():
            try:
                self._session(stop)
            except Exception as exc:
                self._on_error(self.stage.name)
                event(log, logging.ERROR, "stage failed; re-reading from committed offsets",
                      stage=self.stage.name, error=f"{type(exc).__name__}: {exc}",
                      retry_in_seconds=self._backoff)
                self.stage.reset()
                stop.wait(self._backoff)

    def _session(self, stop: threading.Event) -> None:
        self.stage.prepare()  # before partitions: readiness waits for it
        if self.gate is not None:
            gate, self.gate = self.gate, None
            gate()
        producer = Producer(self._producer_config)
        with self._blocking(30):
            producer.init_transactions(30)
        consumer = Consumer(self._consumer_config)
        committed: dict[tuple[str, int], tuple[int, str | None]] = {}
        names = self.stage.topics()
        fetch_ids = self._topic_ids
        ids = fetch_ids(names) if fetch_ids is not None else {}
        watch = IncarnationWatch(lambda: fetch_ids(names), ids) if fetch_ids else None

        def on_assign(c: Consumer, partitions: list[TopicPartition]) -> None:
            # The stage is handed each partition with its committed offset and metadata.
            positions, stale = resume_positions(c.committed(partitions, timeout=15), ids)
            for tp, was in stale:
                event(log, logging.WARNING, "offset committed for another incarnation of "
                      "the topic; reading the partition from its start", stage=self.stage.name,
                      topic=tp.topic, partition=tp.partition, committed=tp.offset,
                      committed_topic_id=was, topic_id=ids.get(tp.topic))
            if stale:  # within the callback: the assignment, with those from their start
                if self._consumer_config.get("partition.assignment.strategy") == \
                        "cooperative-sticky":
                    c.incremental_assign(positions)  # only the partitions added
                else:
                    c.assign(positions)
            self.stage.assigned(c, positions)
            if self._lag is not None:
                self._lag.assigned(positions)
            self.assigned_once = True
            event(log, logging.INFO, "partitions assigned", stage=self.stage.name,
                  partitions=_names(partitions))

        def on_revoke(_: Consumer, partitions: list[TopicPartition]) -> None:
            if partitions:
                event(log, logging.INFO, "partitions revoked", stage=self.stage.name,
                      partitions=_names(partitions))
            self.stage.revoked(partitions)
            if self._lag is not None:
                self._lag.revoked(partitions)
            for tp in partitions:
                committed.pop((tp.topic, tp.partition), None)

        consumer.subscribe(self.stage.topics(), on_assign=on_assign, on_revoke=on_revoke,
                           on_lost=on_revoke)
        try:
            while not stop.is_set():
                messages = self._next_batch(consumer)
                records = [m for m in messages if not _skippable_error(m)]
                now = self._clock()
                outputs = self.stage.handle(records, now) if records else []
                outputs += self.stage.tick(now)
                offsets = [tp for tp in (stamp(tp, ids) for tp in self.stage.offsets())
                           if committed.get((tp.topic, tp.partition))
                           != (tp.offset, tp.metadata)]
                if outputs or offsets:
                    self._commit(producer, consumer, outputs, offsets)
                    for tp in offsets:
                        committed[(tp.topic, tp.partition)] = (tp.offset, tp.metadata)
                    self.stage.committed(outputs, now)
                    if self._on_batch is not None:
                        self._on_batch(self.stage.name, len(records))
                self.last_beat = now
                if self._lag is not None:
                    self._lag.update(consumer, now)
                if self._throughput is not None:
                    # Every record read counts, also those a batch holds in open windows
                    # without moving the committed offset.
                    self._throughput.processed(len(records), now)
                if watch is not None:
                    self._check_incarnations(watch, now)
        finally:
            if self._lag is not None:
                self._lag.clear()
            _close_quietly(consumer)

    def _check_incarnations(self, watch: IncarnationWatch, now: float) -> None:
        changed = watch.changed(now)
        if changed:
            for name, (was, now_id) in changed.items():
                event(log, logging.WARNING, "topic re-created while the stage ran; starting "
                      "over from its new incarnation", stage=self.stage.name, topic=name,
                      previous_topic_id=was, topic_id=now_id)
            raise TopicRecreatedError(f"topics re-created: {', '.join(sorted(changed))}")

    def _next_batch(self, consumer: Consumer) -> list[Message]:
        """Up to `batch_size` records: whatever is there within `linger`, else the first
        to arrive within `poll_timeout` and what follows it within `linger`.

        librdkafka's consume(n, timeout) waits for n records or the whole timeout; with
        fewer than n coming (the last records of a backlog, or live traffic) every hop of
        the pipeline sat out the timeout. A backlog still fills whole batches at once from
        the prefetched queue, and live traffic commits at most every `linger` seconds: 0.1,
        as Kafka Streams commits under exactly-once. At 0.05 the stages' extra transactions
        (4 processes, 20 a second each at 1,000 webhooks/s) raised the gateway bench's p99
        from 19-22 ms to 56 ms; at 0.1 it measured 26-36 ms."""
        messages = consumer.consume(self._batch_size, self._linger)
        if messages:
            return messages
        first = consumer.poll(self._poll_timeout)
        if first is None:
            return []
        return [first, *consumer.consume(self._batch_size - 1, self._linger)]

    def _commit(self, producer: Producer, consumer: Consumer, outputs: list[Output],
                offsets: list[TopicPartition]) -> None:
        self.stage.persist(outputs)
        producer.begin_transaction()
        enqueue = producer.produce
        try:
            for output in outputs:
                try:  # the call itself, once per record; produce() when the queue is full
                    enqueue(output.topic, output.value, output.key, headers=output.headers)
                except BufferError:
                    produce(producer, output.topic, output.value, output.key, output.headers)
            if offsets:
                with self._blocking(30):
                    producer.send_offsets_to_transaction(
                        offsets, consumer.consumer_group_metadata(), 30)
            with self._blocking(60):
                producer.commit_transaction(60)
        except KafkaException:
            # Whatever failed, this batch is not committed; the next session re-reads it.
            with contextlib.suppress(KafkaException), self._blocking(30):
                producer.abort_transaction(30)
            raise


def _names(partitions: list[TopicPartition]) -> str:
    """`jira.events[0,1] trello.events[0,1]`: short enough for one log line."""
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return " ".join(f"{name}[{','.join(map(str, sorted(numbers)))}]"
                    for name, numbers in sorted(by_topic.items()))


def _skippable_error(message: Message) -> bool:
    error = message.error()
    if error is None:
        return False
    if error.code() == KafkaError._PARTITION_EOF:
        return True
    raise KafkaException(error)


def _close_quietly(consumer: Consumer) -> None:
    with contextlib.suppress(KafkaException, RuntimeError):
        consumer.close()
