"""confluent-kafka client settings shared by every boxsync stage, and topic name helpers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer

from processors.settings import Settings
from schemas.topics import TopicSpec


def topic(settings: Settings, spec: TopicSpec) -> str:
    return spec.full_name(settings.topic_prefix)


def group_id(settings: Settings, stage: str) -> str:
    return f"{settings.topic_prefix}boxsync-{stage}"


def client_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """What every Kafka client of boxsync starts from: the brokers and how to reach them
    (TLS, SASL). Consumers, producers and admin clients are all built from it."""
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap}
    config.update(security_config(settings))
    config.update(extra)
    return config


def security_config(settings: Settings) -> dict[str, Any]:
    """librdkafka's security properties for the settings; none for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    config: dict[str, Any] = {"security.protocol": protocol.lower()}
    if protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        config.update({"sasl.mechanism": settings.kafka_sasl_mechanism,
                       "sasl.username": settings.kafka_sasl_username,
                       "sasl.password": password.get_secret_value() if password else ""})
    if protocol.endswith("SSL") and settings.kafka_ssl_ca_file is not None:
        config["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
    return config


def consumer_config(settings: Settings, group: str, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = client_config(settings)
    config.update({
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # Upstream producers and boxsync's own stages write in transactions: never read
        # what a killed stage wrote but did not commit.
        "isolation.level": "read_committed",
        # A 6 s session lets a restarted worker take its partitions back in seconds. A member
        # learns of a rebalance from its next heartbeat: at 0.5 s, a process that joins its
        # running siblings waits half a second for its partitions instead of 1.5.
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "fetch.wait.max.ms": 100,
        "partition.assignment.strategy": settings.kafka_assignment_strategy,
        # librdkafka prefetches up to 64 MiB per partition by default; a batch or so
        # suffices. Measured in `make bench` (2 ingest and 2 collapse processes): 16 MiB →
        # 4 MiB took the worker's peak RSS from 785 to 753 MiB, with less CPU per event.
        "queued.max.messages.kbytes": 4096,
        # When that queue is full, librdkafka (>= 2.4) waits fetch.queue.backoff.ms, 1 s by
        # default, before it fetches again: the loop then drains the queue and starves for
        # the rest of the second. Measured on the ingest stage alone (200,000 bodies, one
        # process, records passed through unchanged): 36,000 events/s with the default,
        # 275,000 with 10 ms.
        "fetch.queue.backoff.ms": 10,
    })
    config.update(extra)
    return config


def producer_config(settings: Settings, transactional_id: str | None = None,
                    **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = client_config(settings)
    config.update({
        # The Java client's partitioner: a task id lands on the same partition number of every
        # task-keyed topic, whichever client (or language) wrote it.
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
    })
    if transactional_id:
        config["transactional.id"] = transactional_id
        # A killed worker's open transaction blocks read_committed readers until it times
        # out or a restarted worker with the same id aborts it; keep the timeout short.
        config["transaction.timeout.ms"] = 15000
    config.update(extra)
    return config


DeliveryCallback = Callable[[KafkaError | None, Message], None]


def produce(producer: Producer, topic: str, value: bytes | None, key: bytes | str | None = None,
            headers: Sequence[tuple[str, str | bytes | None]] | None = None,
            on_delivery: DeliveryCallback | None = None) -> None:
    """Enqueue one record, waiting for room while the local queue is full (BufferError);
    with `on_delivery`, also serve the delivery reports that are due. The stage loops call
    this once per record: a list of headers passes as it is."""
    header_list = headers if headers is None or isinstance(headers, list) else list(headers)
    while True:
        try:
            if on_delivery is None:
                producer.produce(topic, value, key, headers=header_list)
            else:
                producer.produce(topic, value=value, key=key, headers=header_list,
                                 on_delivery=on_delivery)
                producer.poll(0)
            return
        except BufferError:
            producer.poll(0.05)  # let deliveries drain


def read_to_end(consumer: Consumer, pending: set[tuple[str, int]],
                on_message: Callable[[Message], None], deadline: float,
                clock: Callable[[], float]) -> set[tuple[str, int]]:
    """Consume the assigned partitions (`pending`, as (topic, partition)) until each has
    reported its end (the consumer needs `enable.partition.eof`), handing every record to
    `on_message`; stops at `deadline` (by `clock`). The partitions not read to their end:
    empty when all were."""
    pending = set(pending)
    while pending and clock() <= deadline:
        for message in consumer.consume(1000, 0.5):
            error = message.error()
            if error is None:
                on_message(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                pending.discard((message.topic() or "", message.partition() or 0))
    return pending
