"""Origins (`topic[@topic id]:partition:offset`): which record something came from, named so
that records of two incarnations of one topic never look alike (processors.runtime.incarnations).
Pure string functions: the collapse's logic and the command handler use them."""

from __future__ import annotations


def stamped(name: str | None, topic_id: str | None) -> str:
    """`jira.events@<id>`: a topic name with its incarnation, for origins and cause ids."""
    return f"{name}@{topic_id}" if topic_id else f"{name}"


def same_record(stored: str, seen: str) -> bool:
    """Whether two `topic[@id]:partition:offset` origins name the same record. One stored
    before incarnations were stamped (no `@`) matches the same coordinates of any id: it was
    written by this incarnation or the data would not be there."""
    if stored == seen:
        return True
    if "@" in stored or "@" not in seen:
        return False
    name, _, rest = seen.partition("@")
    return stored == f"{name}:{rest.partition(':')[2]}"


def origin(name: str | None, topic_id: str | None, partition: int | None,
           offset: int | None) -> str:
    return f"{stamped(name, topic_id)}:{partition}:{offset}"
