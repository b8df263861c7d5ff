"""Consumer lag per input partition, from a loop's own position and the high watermarks its
fetches brought back (contract, issue 16: `boxsync_consumer_lag_records`).

No broker request is made for it: `Consumer.position()` is the client's own read position and
`get_watermark_offsets(cached=True)` the high watermark of the last fetch response. The gauge is
refreshed at most once per `every` seconds, so a loop committing 20 batches a second pays for
it once; a revoked partition's series is removed, so that the processes of one stage, whose
gauges the worker sums, never count a partition twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Protocol

from confluent_kafka import TopicPartition
from prometheus_client import Gauge

# librdkafka's OFFSET_INVALID (-1001) and friends are all negative.
UNKNOWN = -1


class PositionSource(Protocol):
    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]: ...
    def get_watermark_offsets(self, partition: TopicPartition, timeout: float = ...,
                              cached: bool = ...) -> tuple[int, int]: ...


def lag_of(position: int, low: int, high: int) -> int | None:
    """Records between the read position and the high watermark; None when either is not
    known yet (nothing fetched since the assignment). A position below the log start (the
    records were deleted by retention) counts from the log start."""
    if high < 0:
        return None
    if position < 0:
        return None
    return max(0, high - max(position, low if low >= 0 else 0))


class LagTracker:
    def __init__(self, gauge: Gauge, stage: str, every: float = 1.0) -> None:
        self._gauge = gauge
        self._stage = stage
        self._every = every
        self._partitions: dict[tuple[str, int], TopicPartition] = {}
        self._next = 0.0

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._partitions[(tp.topic, tp.partition)] = TopicPartition(tp.topic, tp.partition)
        self._next = 0.0  # show the new partitions at the next batch

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            if self._partitions.pop((tp.topic, tp.partition), None) is not None:
                self._remove(tp.topic, tp.partition)

    def clear(self) -> None:
        """The session ended: its partitions are no longer this process's."""
        for topic, partition in list(self._partitions):
            self._remove(topic, partition)
        self._partitions.clear()

    def update(self, consumer: PositionSource, now: float) -> None:
        if now < self._next or not self._partitions:
            return
        self._next = now + self._every
        for tp in consumer.position(list(self._partitions.values())):
            marks = consumer.get_watermark_offsets(tp, cached=True)
            lag = lag_of(tp.offset, marks[0], marks[1])
            if lag is not None:
                self._gauge.labels(self._stage, tp.topic, str(tp.partition)).set(lag)

    def _remove(self, topic: str, partition: int) -> None:
        with contextlib.suppress(KeyError):  # never set: nothing fetched before it went
            self._gauge.remove(self._stage, topic, str(partition))


class RecordRate:
    """Records per second over the last `window` seconds, in one-second buckets (pure)."""

    def __init__(self, window: int = 60) -> None:
        self._window = window
        self._buckets: dict[int, int] = {}
        self._started: float | None = None

    def add(self, records: int, now: float) -> None:
        if self._started is None:
            self._started = now
        if records:
            second = int(now)
            self._buckets[second] = self._buckets.get(second, 0) + records

    def per_second(self, now: float) -> float:
        """Over the last `window` seconds, or since the first `add` when that is sooner."""
        oldest = int(now) - self._window + 1
        for second in [s for s in self._buckets if s < oldest]:
            del self._buckets[second]
        if self._started is None:
            return 0.0
        span = min(float(self._window), max(1.0, now - self._started))
        return sum(self._buckets.values()) / span


class Throughput:
    """`boxsync_stage_records_per_second{stage}`: the records a loop read and handled, per
    second over the last minute (what `boxsync status` shows)."""

    def __init__(self, gauge: Gauge, stage: str, every: float = 1.0) -> None:
        self._gauge = gauge.labels(stage)
        self._rate = RecordRate()
        self._every = every
        self._next = 0.0

    def processed(self, records: int, now: float) -> None:
        """After each loop turn (0 records too: the rate falls when input stops)."""
        self._rate.add(records, now)
        if now >= self._next:
            self._next = now + self._every
            self._gauge.set(round(self._rate.per_second(now), 3))
