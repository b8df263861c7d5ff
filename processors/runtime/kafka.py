"""confluent-kafka client settings shared by every boxsync stage, and topic name helpers."""

from __future__ import annotations

from typing import Any

from processors.settings import Settings
from schemas.topics import TopicSpec


def topic(settings: Settings, spec: TopicSpec) -> str:
    return spec.full_name(settings.topic_prefix)


def group_id(settings: Settings, stage: str) -> str:
    return f"{settings.topic_prefix}boxsync-{stage}"


def consumer_config(settings: Settings, group: str, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # Upstream producers and boxsync's own stages write in transactions: never read
        # what a killed stage wrote but did not commit.
        "isolation.level": "read_committed",
        # A 6 s session lets a restarted worker take its partitions back in seconds.
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1500,
        "fetch.wait.max.ms": 100,
        "partition.assignment.strategy": "range",
        # librdkafka prefetches up to 64 MiB per consumer by default; a few batches suffice.
        "queued.max.messages.kbytes": 16384,
    }
    config.update(extra)
    return config


def producer_config(settings: Settings, transactional_id: str | None = None,
                    **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        # The Java client's partitioner: a task id lands on the same partition number of every
        # task-keyed topic, whichever client (or language) wrote it.
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
    }
    if transactional_id:
        config["transactional.id"] = transactional_id
        # A killed worker's open transaction blocks read_committed readers until it times
        # out or a restarted worker with the same id aborts it; keep the timeout short.
        config["transaction.timeout.ms"] = 15000
    config.update(extra)
    return config
