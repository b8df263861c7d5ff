"""Which incarnation of a topic a record, an offset or a stored row belongs to.

Kafka offsets are comparable only within one incarnation of one topic: they start again at 0
when a topic is deleted and re-created, when a tenant moves to another cluster (MirrorMaker,
a restore), and on every other prefix. The broker gives each topic a unique id when it is
created (KIP-516); boxsync stamps that id wherever it keeps an offset or compares positions:

- committed offsets carry it in their metadata (processors.runtime.loop): an offset committed
  for another incarnation is not resumed from; the partition is read from its start;
- reference rows (`reference_records.incarnation`), command origins and warning causes carry
  it, so a record of a new incarnation always replaces the old one and a replay of an old
  range of the same incarnation changes nothing;
- a change's origin carries its raw topic's id, so a body re-sent into a re-created topic
  at the same coordinates is a duplicate, not a re-read of the same record.

`newer` therefore means: a different incarnation, or, within one, a higher offset (contract).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import orjson
from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from processors.errors import UnavailableError
from processors.runtime.kafka import client_config
from processors.settings import Settings

# How often a running stage asks whether its topics were re-created.
CHECK_SECONDS = 15.0


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings, log_level=0))


def topic_ids(admin: AdminClient, names: Iterable[str], timeout: float = 15) -> dict[str, str]:
    """Topic name → the broker's id of its current incarnation."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    futures = admin.describe_topics(TopicCollection(wanted), request_timeout=timeout)
    found = {}
    for name, future in futures.items():
        try:
            found[name] = str(future.result().topic_id)
        except KafkaException as exc:
            raise UnavailableError(f"cannot describe topic {name} ({exc.args[0].str()}); "
                                   "does it exist? run `boxsync topics create`") from None
    return found


class IncarnationWatch:
    """Tells a running stage that one of its topics was re-created since it started.

    `fetch` returns the current ids; it is called at most every `every` seconds of the
    injected clock, so the check costs one admin request per interval, not per batch."""

    def __init__(self, fetch: Callable[[], dict[str, str]], known: dict[str, str],
                 every: float = CHECK_SECONDS) -> None:
        self._fetch = fetch
        self.known = dict(known)
        self._every = every
        self._checked_at: float | None = None

    def changed(self, now: float) -> dict[str, tuple[str, str]]:
        """Topic → (id known, id now) of each topic whose id changed; {} between checks."""
        if self._checked_at is not None and now - self._checked_at < self._every:
            return {}
        self._checked_at = now
        try:
            current = self._fetch()
        except UnavailableError:
            # Deleted and not re-created yet: the consumer's own errors say so; look again.
            return {}
        return {name: (old, current[name]) for name, old in self.known.items()
                if name in current and current[name] != old}


def stamp(partition: TopicPartition, ids: dict[str, str]) -> TopicPartition:
    """The offset to commit with its topic's id added to the stage's metadata (a JSON object
    or empty)."""
    topic_id = ids.get(partition.topic)
    if topic_id is None:
        return partition
    metadata = orjson.loads(partition.metadata) if partition.metadata else {}
    metadata["topic_id"] = topic_id
    return TopicPartition(partition.topic, partition.partition, partition.offset,
                          metadata=orjson.dumps(metadata).decode())


def committed_topic_id(metadata: str | None) -> str | None:
    if not metadata:
        return None
    try:
        found = orjson.loads(metadata)
    except orjson.JSONDecodeError:
        return None
    value = found.get("topic_id") if isinstance(found, dict) else None
    return value if isinstance(value, str) else None


def resume_positions(committed: list[TopicPartition], ids: dict[str, str]
                     ) -> tuple[list[TopicPartition], list[tuple[TopicPartition, str]]]:
    """Where to resume each assigned partition: its committed offset, or its start where the
    offset was committed for another incarnation of the topic (returned with that id too).
    An offset committed without an id (before ids were stamped) is trusted, as it always was."""
    positions, stale = [], []
    for tp in committed:
        was = committed_topic_id(tp.metadata)
        if was is not None and tp.topic in ids and was != ids[tp.topic]:
            stale.append((tp, was))
            positions.append(TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING))
        else:
            positions.append(tp)
    return positions, stale
