"""The local stack as the test session sees it (conftest's `base_settings` starts it; nothing
here stops it).

Checks that both services report running with a pid and an address, that a second `up`
is a quick no-op, that the database URL the tests use answers, and that the one-node
broker's transaction log works (its replication settings are the easiest thing to get wrong).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from processors.settings import Settings
from processors.stack.postgres import resolve_database_url
from processors.stack.services import ServiceStatus, stack_status, stack_up

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """The session's settings as is: this module needs no topic prefix or database migration."""
    return base_settings


def _by_name(statuses: list[ServiceStatus]) -> dict[str, ServiceStatus]:
    return {status.name: status for status in statuses}


def test_status_reports_kafka_and_postgres_running(settings: Settings) -> None:
    services = _by_name(stack_status(settings))

    kafka = services["kafka"]
    assert kafka.state == "running", kafka
    assert kafka.pid is not None and kafka.pid > 0
    assert kafka.address == f"127.0.0.1:{settings.kafka_port}"
    assert kafka.log_file is not None and kafka.log_file.exists()
    assert kafka.detail == "", kafka.detail

    postgres = services["postgres"]
    if settings.database_url is not None:
        assert postgres.state == "external", postgres
        return
    assert postgres.state == "running", postgres
    assert postgres.pid is not None and postgres.pid > 0
    assert postgres.address.startswith("postgresql://")
    assert postgres.log_file is not None and postgres.log_file.exists()
    assert postgres.detail == "", postgres.detail


def test_up_again_is_quick_and_keeps_the_same_processes(settings: Settings) -> None:
    before = {status.name: status.pid for status in stack_status(settings)}
    messages: list[str] = []

    started = time.monotonic()
    after = stack_up(settings, echo=messages.append)
    elapsed = time.monotonic() - started

    assert elapsed < 10, f"second `up` took {elapsed:.1f} s: {messages}"
    assert {status.name: status.pid for status in after} == before
    assert not [m for m in messages if "fetching" in m or "starting" in m], messages


def test_database_url_answers(settings: Settings) -> None:
    with psycopg.connect(resolve_database_url(settings), connect_timeout=5) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        if settings.database_url is None:
            assert conn.execute("select current_database()").fetchone() == ("boxsync",)


@pytest.fixture
def scratch_topic(settings: Settings) -> Iterator[str]:
    """A one-partition topic of our own, deleted afterwards (auto-creation is off)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    name = f"{settings.topic_prefix}stack-test-{uuid.uuid4().hex[:12]}"
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


def test_broker_commits_and_aborts_transactions(settings: Settings, scratch_topic: str) -> None:
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "transactional.id": f"stack-test-{uuid.uuid4().hex[:12]}",
        }
    )
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(scratch_topic, b"committed")
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(scratch_topic, b"aborted")
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(scratch_topic, b"last")
    producer.commit_transaction(30)

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"stack-test-{uuid.uuid4().hex[:12]}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([scratch_topic])
    received: list[bytes | None] = []
    deadline = time.monotonic() + 30
    try:
        while len(received) < 2 and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                received.append(message.value())
        # The group coordinator (__consumer_offsets, replication factor 1) must work too.
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()

    assert received == [b"committed", b"last"]
