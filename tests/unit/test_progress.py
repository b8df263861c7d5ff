"""processors.runtime.progress: lag from a loop's own positions and cached high watermarks,
and records per second over the last minute."""

from __future__ import annotations

from confluent_kafka import TopicPartition
from prometheus_client import CollectorRegistry

from processors.metrics import Metrics
from processors.runtime.progress import LagTracker, RecordRate, Throughput, lag_of


class FakeConsumer:
    """Positions and watermarks as a consumer holds them locally; counts the calls."""

    def __init__(self, positions: dict[tuple[str, int], int],
                 marks: dict[tuple[str, int], tuple[int, int]]) -> None:
        self.positions = positions
        self.marks = marks
        self.position_calls = 0

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        self.position_calls += 1
        return [TopicPartition(tp.topic, tp.partition,
                               self.positions.get((tp.topic, tp.partition), -1001))
                for tp in partitions]

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float = 1.0,
                              cached: bool = False) -> tuple[int, int]:
        assert cached, "the loop must not ask the broker"
        return self.marks.get((partition.topic, partition.partition), (-1001, -1001))


def lags(metrics: Metrics) -> dict[tuple[str, str, str], float]:
    [family] = [f for f in metrics.registry.collect() if f.name == "boxsync_consumer_lag_records"]
    return {(s.labels["stage"], s.labels["topic"], s.labels["partition"]): s.value
            for s in family.samples}


def test_lag_of_counts_from_position_to_high_watermark() -> None:
    assert lag_of(300, 0, 1001) == 701
    assert lag_of(1001, 0, 1001) == 0
    assert lag_of(1002, 0, 1001) == 0  # past the transaction marker: never negative
    assert lag_of(5, 100, 150) == 50  # deleted by retention: counted from the log start


def test_lag_of_is_unknown_before_anything_was_fetched() -> None:
    assert lag_of(-1001, 0, 10) is None
    assert lag_of(5, -1001, -1001) is None


def test_tracker_sets_one_series_per_assigned_partition_and_removes_revoked() -> None:
    metrics = Metrics.create(CollectorRegistry())
    tracker = LagTracker(metrics.consumer_lag, "ingest")
    consumer = FakeConsumer({("jira.events", 0): 10, ("trello.events", 0): 7},
                            {("jira.events", 0): (0, 25), ("trello.events", 0): (0, 7)})
    tracker.assigned([TopicPartition("jira.events", 0, 3), TopicPartition("trello.events", 0)])
    tracker.update(consumer, now=100.0)
    assert lags(metrics) == {("ingest", "jira.events", "0"): 15,
                             ("ingest", "trello.events", "0"): 0}
    tracker.revoked([TopicPartition("jira.events", 0)])
    assert lags(metrics) == {("ingest", "trello.events", "0"): 0}
    tracker.clear()
    assert lags(metrics) == {}


def test_tracker_refreshes_at_most_once_per_interval() -> None:
    metrics = Metrics.create(CollectorRegistry())
    tracker = LagTracker(metrics.consumer_lag, "collapse", every=1.0)
    consumer = FakeConsumer({("sync.changes", 1): 0}, {("sync.changes", 1): (0, 4)})
    tracker.assigned([TopicPartition("sync.changes", 1)])
    for step in range(20):  # 20 batches within one second
        tracker.update(consumer, now=50.0 + step * 0.05)
    assert consumer.position_calls == 1
    consumer.positions[("sync.changes", 1)] = 4
    tracker.update(consumer, now=51.0)
    assert consumer.position_calls == 2
    assert lags(metrics) == {("collapse", "sync.changes", "1"): 0}


def test_partition_not_fetched_yet_has_no_series() -> None:
    metrics = Metrics.create(CollectorRegistry())
    tracker = LagTracker(metrics.consumer_lag, "boxes")
    tracker.assigned([TopicPartition("sync.commands", 0)])
    tracker.update(FakeConsumer({}, {}), now=1.0)
    assert lags(metrics) == {}
    tracker.revoked([TopicPartition("sync.commands", 0)])  # nothing to remove: no error


def test_record_rate_is_over_the_last_minute() -> None:
    rate = RecordRate(window=60)
    rate.add(0, 1000.0)
    rate.add(600, 1010.0)
    assert rate.per_second(1020.0) == 30.0  # 600 records over the 20 s since the start
    rate.add(1200, 1050.0)
    assert rate.per_second(1060.0) == 30.0  # 1,800 over the last 60 s
    assert rate.per_second(1070.5) == 20.0  # the first 600 (second 1010) fell out
    assert rate.per_second(2000.0) == 0.0


def test_record_rate_before_any_record_is_zero() -> None:
    assert RecordRate().per_second(5.0) == 0.0


def test_throughput_counts_every_turn_and_sets_the_gauge_once_a_second() -> None:
    metrics = Metrics.create(CollectorRegistry())
    throughput = Throughput(metrics.stage_records_rate, "collapse")

    def shown() -> float:
        value = metrics.registry.get_sample_value("boxsync_stage_records_per_second",
                                                  {"stage": "collapse"})
        assert value is not None
        return value

    throughput.processed(100, 1000.0)
    assert shown() == 100.0  # 100 records in the first second
    for step in range(1, 10):  # nine more turns within the same second: no new value shown
        throughput.processed(100, 1000.0 + step * 0.1)
    assert shown() == 100.0
    throughput.processed(0, 1010.0)  # turns without records still count time
    assert shown() == 100.0  # 1,000 records over 10 s
