"""How the transactional loop gathers a batch (processors.runtime.loop._next_batch).

The consumer here is a script of what librdkafka would return; what is under test is the
loop's choice of calls and timeouts, not Kafka (the integration tests run the loop on the
real broker)."""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import TopicPartition

from processors.runtime.loop import TransactionalLoop
from processors.runtime.stage_process import hung_call


class ScriptedConsumer:
    def __init__(self, consumed: list[list[str]], polled: list[str | None]) -> None:
        self.consumed, self.polled = consumed, polled
        self.calls: list[tuple[str, int | None, float]] = []

    def consume(self, num_messages: int, timeout: float) -> list[str]:
        self.calls.append(("consume", num_messages, timeout))
        return self.consumed.pop(0) if self.consumed else []

    def poll(self, timeout: float) -> str | None:
        self.calls.append(("poll", None, timeout))
        return self.polled.pop(0) if self.polled else None


def _loop() -> TransactionalLoop:
    stage: Any = object()
    return TransactionalLoop(stage, {}, {}, on_error=lambda _: None, batch_size=100,
                             poll_timeout=0.2, linger=0.05)


def test_a_backlog_is_taken_in_one_call_without_waiting_for_the_poll_timeout() -> None:
    consumer = ScriptedConsumer([[f"r{n}" for n in range(100)]], [])
    batch = _loop()._next_batch(consumer)  # type: ignore[arg-type]
    assert len(batch) == 100
    assert consumer.calls == [("consume", 100, 0.05)]


def test_quiet_input_waits_for_the_first_record_then_lingers_briefly_for_more() -> None:
    consumer = ScriptedConsumer([[], ["r2", "r3"]], ["r1"])
    batch = _loop()._next_batch(consumer)  # type: ignore[arg-type]
    assert batch == ["r1", "r2", "r3"]
    assert consumer.calls == [("consume", 100, 0.05), ("poll", None, 0.2),
                              ("consume", 99, 0.05)]


def test_nothing_within_the_poll_timeout_gives_an_empty_batch() -> None:
    consumer = ScriptedConsumer([], [None])
    assert _loop()._next_batch(consumer) == []  # type: ignore[arg-type]
    assert consumer.calls == [("consume", 100, 0.05), ("poll", None, 0.2)]


class BlockingProducer:
    """A transactional producer whose send_offsets_to_transaction waits until released, as
    librdkafka's did after a broker restart (it ignored its timeout)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def begin_transaction(self) -> None:
        pass

    def produce(self, *args: Any, **kwargs: Any) -> None:
        pass

    def send_offsets_to_transaction(self, *args: Any) -> None:
        self.release.wait(10)

    def commit_transaction(self, timeout: float) -> None:
        pass


class NoStage:
    def persist(self, outputs: list[Any]) -> None:
        pass


class GroupConsumer:
    def consumer_group_metadata(self) -> object:
        return object()


def test_a_transactional_call_that_hangs_is_seen_by_the_watchdog_and_cleared_after() -> None:
    loop = TransactionalLoop(NoStage(), {}, {}, on_error=lambda _: None)  # type: ignore[arg-type]
    producer = BlockingProducer()
    offsets = [TopicPartition("t", 0, 5)]
    worker = threading.Thread(target=loop._commit, args=(producer, GroupConsumer(), [],
                                                         offsets))
    assert loop.hung_for() == 0.0
    worker.start()
    time.sleep(0.2)
    assert loop.hung_for() == 0.0  # within the call's own 30 s timeout
    late = time.monotonic() + 30 + 20  # as if it had run 50 s: 20 past its timeout
    assert loop.hung_for(now=late) >= 19.5
    assert hung_call(_Fixed(loop, late)) >= 19.5  # past the margin: the stage process ends
    assert hung_call(_Fixed(loop, late - 10)) == 0.0  # 10 s past: within the 15 s margin
    producer.release.set()
    worker.join(5)
    assert loop.hung_for(now=late) == 0.0


class _Fixed:
    """A loop seen at a fixed moment."""

    def __init__(self, loop: TransactionalLoop, now: float) -> None:
        self.loop, self.now = loop, now

    def hung_for(self) -> float:
        return self.loop.hung_for(self.now)
