"""The battery's upstream system: publishes (due, body) pairs on time from a thread.

An idempotent producer, as Jira's and Trello's senders retry until they are answered. When no
delivery report has come for STALL_SECONDS while records are outstanding (seen once in a
broker restart: the client never got going again), it gives up on that producer and sends
what was not acknowledged again from a new one, as an upstream sender retries a delivery; the
raw topic then holds a record twice with the same delivery id or action id, which boxsync
must apply once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from chaos.bodies import Body
from processors.settings import Settings
from schemas.topics import by_name

STALL_SECONDS = 30.0
FLUSH_SECONDS = 600.0


@dataclass
class Publisher:
    settings: Settings
    sent: int = 0
    acked: int = 0
    failed: int = 0
    resent: int = 0  # records sent again from a new producer after a stall
    late_seconds: float = 0.0  # how far behind schedule it fell at worst
    done: threading.Event = field(default_factory=threading.Event)
    sent_at: dict[str, float] = field(default_factory=dict)  # event id → wall time sent

    def __post_init__(self) -> None:
        self._pending: dict[int, Body] = {}
        self._generation = 0
        self._last_ack = time.monotonic()
        self._names = {topic: by_name(topic).full_name(self.settings.topic_prefix)
                       for topic in ("jira.events", "trello.events")}
        self._producer = self._new_producer()

    def run(self, schedule: Iterable[tuple[float, Body]], stop: threading.Event,
            keep_times: bool = False) -> threading.Thread:
        thread = threading.Thread(target=self._run, args=(schedule, stop, keep_times),
                                  name="chaos-publisher", daemon=True)
        thread.start()
        return thread

    def _new_producer(self) -> Producer:
        return Producer({"bootstrap.servers": self.settings.kafka_bootstrap, "log_level": 2,
                         "enable.idempotence": True, "linger.ms": 5,
                         "partitioner": "murmur2_random", "message.timeout.ms": 300000,
                         "queue.buffering.max.messages": 1000000})

    def _delivered(self, error: Any, number: int, generation: int) -> None:
        if generation != self._generation:
            return  # a report of a producer given up on: its record was sent again
        self._pending.pop(number, None)
        self._last_ack = time.monotonic()
        if error is None:
            self.acked += 1
        else:
            self.failed += 1

    def _produce(self, number: int, body: Body) -> None:
        generation = self._generation
        while True:
            try:
                self._producer.produce(
                    self._names[body.topic], body.value, body.key,
                    headers=body.headers or None,
                    on_delivery=lambda error, _m: self._delivered(error, number, generation))
                return
            except BufferError:
                self._producer.poll(0.05)
                self._unstall()

    def _unstall(self) -> None:
        if not self._pending or time.monotonic() - self._last_ack < STALL_SECONDS:
            return
        old, self._producer = self._producer, self._new_producer()
        self._generation += 1
        self._last_ack = time.monotonic()
        old.purge(in_queue=True, in_flight=True, blocking=False)
        old.poll(0)
        waiting = sorted(self._pending.items())
        self.resent += len(waiting)
        for number, body in waiting:
            self._produce(number, body)

    def _run(self, schedule: Iterable[tuple[float, Body]], stop: threading.Event,
             keep_times: bool) -> None:
        started = time.monotonic()
        try:
            for number, (due, body) in enumerate(schedule):
                if stop.is_set():
                    break
                wait = started + due - time.monotonic()
                if wait > 0:
                    self._producer.poll(wait)
                else:
                    self.late_seconds = max(self.late_seconds, -wait)
                self._pending[number] = body
                self._produce(number, body)
                if keep_times:
                    self.sent_at[body.event_id] = time.time()
                self.sent += 1
                if self.sent % 500 == 0:
                    self._producer.poll(0)
                    self._unstall()
            deadline = time.monotonic() + FLUSH_SECONDS
            while self._pending and time.monotonic() < deadline and not stop.is_set():
                self._producer.poll(0.5)
                self._unstall()
        finally:
            self.done.set()
