"""Checks before a worker starts: each failure is one line that names the address and the fix."""

from __future__ import annotations

import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata
from psycopg import OperationalError
from psycopg.conninfo import conninfo_to_dict

from processors.errors import BoxsyncError, UnavailableError
from processors.runtime.incarnations import admin_client, topic_ids
from processors.runtime.kafka import client_config
from processors.settings import Settings
from processors.store import boxes, db
from processors.store.tenancy import schema_of
from schemas.topics import ALL_TOPICS


def kafka_metadata(settings: Settings, timeout: float = 5) -> ClusterMetadata:
    admin = AdminClient(client_config(
        settings,
        # fail fast instead of retrying forever against a closed port
        **{"socket.connection.setup.timeout.ms": int(timeout * 1000),
           # the one-line error below says it all; no librdkafka log flood
           "log_level": 0}))
    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise UnavailableError(
            f"cannot reach Kafka at {settings.kafka_bootstrap} ({exc.args[0].str()}); "
            "start it with `boxsync stack up` or set BOXSYNC_KAFKA_BOOTSTRAP") from None


def wait_for_topics(settings: Settings, timeout: float = 15.0) -> None:
    """check_topics, allowing for topics created a moment ago: a broker's metadata cache
    learns of new topics shortly after CreateTopics returns."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check_topics(settings, kafka_metadata(settings))
            return
        except UnavailableError:
            raise
        except BoxsyncError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def check_topics(settings: Settings, metadata: ClusterMetadata) -> None:
    """Every topic exists, and every task-keyed topic has the same partition count."""
    missing = [spec.full_name(settings.topic_prefix) for spec in ALL_TOPICS
               if spec.full_name(settings.topic_prefix) not in metadata.topics]
    if missing:
        raise BoxsyncError(f"missing topics {', '.join(missing)}; run `boxsync topics create`")
    counts = {spec.name: len(metadata.topics[spec.full_name(settings.topic_prefix)].partitions)
              for spec in ALL_TOPICS if spec.keyed_by_task}
    if len(set(counts.values())) > 1:
        raise BoxsyncError(f"task-keyed topics differ in partition count {counts}; they must "
                           "match so that a task stays on one partition")


def describe_database(url: str) -> str:
    """host:port/dbname of a connection URL, without user or password."""
    try:
        info = conninfo_to_dict(url)
    except Exception:
        return "the configured database"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def check_database(url: str) -> None:
    """Reachable and migrated."""
    check_database_reachable(url)
    pending = db.pending(url)
    if pending:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in pending)
        raise BoxsyncError(f"database migrations not applied in schema {schema_of(url)} ({names}); "
                           "run `boxsync db migrate`")


def check_database_reachable(url: str) -> None:
    try:
        with db.connect(url, autocommit=True, timeout=5) as conn:
            conn.execute("SELECT 1")
    except OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnavailableError(
            f"cannot reach PostgreSQL at {describe_database(url)} ({first_line}); "
            "start it with `boxsync stack up` or set BOXSYNC_DATABASE_URL") from None


def note_incarnations(settings: Settings, url: str) -> list[dict[str, str]]:
    """Remember the incarnation of every topic of the tenant; the topics re-created since the
    last start, as {topic, previous_topic_id, topic_id} (the stages rebuild what they derived
    from them: processors.runtime.incarnations)."""
    names = {spec.full_name(settings.topic_prefix): spec.name for spec in ALL_TOPICS}
    ids = topic_ids(admin_client(settings), names)
    with db.connect(url, autocommit=True) as conn:
        changed = boxes.record_topic_ids(conn, {names[full]: tid for full, tid in ids.items()})
    return [{"topic": topic, "previous_topic_id": was, "topic_id": now}
            for topic, was, now in changed]
