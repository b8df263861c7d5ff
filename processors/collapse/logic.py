"""Collapse, pure logic: change events of one partition → one `TaskUpdate` per task and window.

Rules (behaviour.md, "Sync types" and "Ordering, lateness, duplicates"):
- Tumbling windows of `interval` seconds, aligned on source time, one per task and start.
- Within a window each field takes its latest value by (source time, tiebreak, offset), so the
  result does not depend on arrival order. The author is the last change that names a person;
  the technical user only when none does.
- A window closes when the partition's stream time passes its end plus `grace`. Stream time is
  the newest source time seen, advanced by wall-clock time while the partition is quiet, so a
  quiet task is emitted within interval + grace + one tick. (Advancing it by elapsed wall time,
  rather than comparing source times with the wall clock, keeps a replay of old events exactly
  as windowed as the live run was.)
- A change whose window already closed is late: it joins the task's open window that closes
  last (or a new one after the last emitted), field by field only where it is newer than what
  was applied.
- A delete is final: once deleted, later windows of the task are dropped as `stale`.
- The same delivery twice (same event id) is applied once: each task remembers the event ids
  it emitted for at least the dedupe retention, with the raw record each came from. A change
  whose id was emitted from another record is a duplicate; the same record read again after a
  crash is not (its update may never have reached Kafka).

State is mutated in place (copying per event would cost more than the rest of the pipeline);
nothing here does I/O or reads a clock: `now` is passed in.
"""

from __future__ import annotations

import functools
import heapq
import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import msgspec

from processors.runtime.origins import origin as record_origin
from processors.runtime.origins import same_record
from processors.wire import SCHEMA_VERSION, iso, update_id

NEVER = -math.inf


class Arrival(StrEnum):
    ON_TIME = "on_time"
    LATE = "late"
    DUPLICATE = "duplicate"


class Change(msgspec.Struct, gc=False):
    """The parts of a `ChangeEvent` the collapse needs, plus its offset on `sync.changes`.

    A msgspec struct rather than a dataclass: one is built per change, in C (0.10 µs against
    0.25), and its dicts never refer back to it, so the cycle collector can skip it."""

    event_id: str
    task_id: str
    source: str
    source_key: str | None
    project: str | None
    kind: str
    at: float
    author: dict[str, Any]
    changes: dict[str, Any]
    tiebreak: str
    offset: int
    origin: str = ""  # the raw record it came from, `topic[@topic id]:partition:offset`
    # `at` as written (or ""): in the canonical form (`...T12:00:00.000Z`, as ingest writes
    # it), the update's source_updated_at without formatting the time again.
    occurred_at: str = ""

    @classmethod
    def decode(cls, data: bytes, offset: int) -> Change:
        """A `sync.changes` record value → a Change; ValueError for anything that is not a
        ChangeEvent. Decoded straight into typed fields (msgspec), not a dict first: this
        runs once per change, and the dict and its copy cost twice the decoding."""
        try:
            wire = _CHANGE_DECODER.decode(data)
        except msgspec.MsgspecError as exc:
            raise ValueError(str(exc)) from None
        origin = wire.origin
        text = wire.occurred_at
        return cls(str(wire.event_id), wire.task_id, wire.source, wire.source_key,
                   wire.project, wire.kind, epoch_seconds(text), wire.author,
                   wire.changes or {}, wire.tiebreak or "", offset,
                   record_origin(origin.topic, origin.topic_id, origin.partition,
                                 origin.offset) if origin is not None
                   else "None:None:None", text)


class _WireOrigin(msgspec.Struct):
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    topic_id: str | None = None


class _WireChange(msgspec.Struct):
    """The fields of a `ChangeEvent` (contract §2) that the collapse reads; others are
    skipped unparsed."""

    event_id: str | int
    task_id: str
    source: str
    kind: str
    occurred_at: str
    author: dict[str, Any]
    source_key: str | None = None
    project: str | None = None
    changes: dict[str, Any] | None = None
    origin: _WireOrigin | None = None
    tiebreak: str | None = None


_CHANGE_DECODER = msgspec.json.Decoder(_WireChange)


# The order of a task's changes: source time, then tiebreak (changelog or action id), then
# offset; a C-level key, since sorting calls it once per change.
_ORDER = operator.attrgetter("at", "tiebreak", "offset")


# The collapse's own state is msgspec structs untracked by the cycle collector (gc=False):
# they form no cycles, and the collector would otherwise rescan tens of thousands of open
# windows and task memories (see processors.runtime.stage_process._tune_garbage_collector).
class TaskMemory(msgspec.Struct, gc=False):
    """What the collapse must remember about a task across windows (persisted in `tasks`)."""

    deleted: bool = False
    closed_until: float = NEVER  # end of the last window emitted for the task
    field_times: dict[str, float] = msgspec.field(default_factory=dict)
    # event id -> (source time, origin) of the changes emitted: every one for at least the
    # dedupe retention, none much past twice that (see _remember)
    recent: dict[str, tuple[float, str]] = msgspec.field(default_factory=dict)
    # No entry of `recent` is older than this (NEVER: not known, look).
    recent_oldest: float = NEVER
    # what the filters route by: the task's project, labels and boxes after its last update
    project: str | None = None
    labels: tuple[str, ...] = ()
    box_ids: tuple[str, ...] = ()


class OpenWindow(msgspec.Struct, gc=False):
    task_id: str
    start: float
    end: float
    first_offset: int
    opened_wall: float
    last_seen_wall: float
    changes: list[Change] = msgspec.field(default_factory=list)
    event_ids: set[str] = msgspec.field(default_factory=set)


class Emitted(msgspec.Struct, gc=False):
    """A closed window: the `TaskUpdate` dict to publish and write, or why it was dropped."""

    task_id: str
    update: dict[str, Any] | None
    dropped_reason: str | None
    emit_delay: float
    collapsed: int
    field_times: dict[str, float] = msgspec.field(default_factory=dict)
    window_end: float = NEVER
    # What the cache row's recent_events takes: the window's own event ids, added to those
    # stored, or (recent_whole) the task's whole set, replacing them after old ids were dropped.
    recent: dict[str, tuple[float, str]] = msgspec.field(default_factory=dict)
    recent_whole: bool = False
    delivered: bool = True  # False when the update reached no box (the filters)


@dataclass(slots=True)
class PartitionWindows:
    """Open windows and stream time of one `sync.changes` partition."""

    interval: float
    grace: float
    dedupe_retention: float = 3600.0
    stream_time: float = NEVER
    last_event_wall: float = NEVER
    windows: dict[tuple[str, float], OpenWindow] = field(default_factory=dict)
    _by_end: list[tuple[float, str, float]] = field(default_factory=list)
    _open_by_task: dict[str, list[float]] = field(default_factory=dict)

    def observe(self, at: float, now: float) -> None:
        """Advance stream time with a change's source time (also for skipped replays)."""
        self.stream_time = max(self.effective_time(now), at)
        self.last_event_wall = now

    def effective_time(self, now: float) -> float:
        if self.stream_time == NEVER:
            return NEVER
        return self.stream_time + max(0.0, now - self.last_event_wall)

    def add(self, change: Change, memory: TaskMemory, now: float) -> Arrival:
        """Put a change into its window (or recognize it as a second delivery)."""
        # observe(), inlined: this runs once per change.
        stream_time = self.stream_time
        if stream_time != NEVER and now > self.last_event_wall:
            stream_time += now - self.last_event_wall
        self.stream_time = change.at if change.at > stream_time else stream_time
        self.last_event_wall = now
        emitted_from = memory.recent.get(change.event_id)
        # The same event id from another record is a second delivery; from the same record
        # (same incarnation of its topic), a re-read after a restart.
        if emitted_from is not None and not same_record(emitted_from[1], change.origin):
            return Arrival.DUPLICATE
        start = math.floor(change.at / self.interval) * self.interval
        window = self.windows.get((change.task_id, start))
        late = False
        if window is None:
            late = (start < memory.closed_until
                    or start + self.interval + self.grace <= self.stream_time)
            if late:
                window = self._late_window(change, memory, now)
            else:
                window = self._open(change.task_id, start, change.offset, now)
        if change.event_id in window.event_ids or self._in_other_window(change, window):
            return Arrival.DUPLICATE
        window.event_ids.add(change.event_id)
        window.changes.append(change)
        window.last_seen_wall = now
        return Arrival.LATE if late else Arrival.ON_TIME

    def _in_other_window(self, change: Change, window: OpenWindow) -> bool:
        """Whether another open window of the task holds this event id: a second delivery can
        arrive late and be put into a later window than the first (found by `make chaos`:
        both were emitted). A task has one or two open windows, mostly one."""
        starts = self._open_by_task.get(change.task_id, ())
        return len(starts) > 1 and any(
            change.event_id in self.windows[(change.task_id, start)].event_ids
            for start in starts if start != window.start)

    def close_due(self, memories: Mapping[str, TaskMemory], now: float) -> list[Emitted]:
        """Close every window whose end plus grace the stream time has passed."""
        horizon = self.effective_time(now)
        emitted = []
        while self._by_end and self._by_end[0][0] + self.grace <= horizon:
            _, task_id, start = heapq.heappop(self._by_end)
            window = self.windows.pop((task_id, start))
            starts = self._open_by_task[task_id]
            starts.remove(start)
            if not starts:
                del self._open_by_task[task_id]
            memory = memories[task_id]
            emitted.append(close_window(window, memory, now, self.dedupe_retention))
        return emitted

    def commit_point(self, next_offset: int) -> tuple[int, float | None]:
        """The offset safe to commit (never past an open window's first change) and the wall
        time the oldest open window was opened (where a restart looks for emitted updates)."""
        if not self.windows:
            return next_offset, None
        # Windows are opened in offset order (a late window too: at its change's offset) and
        # a dict keeps insertion order through deletions, so the first one is the oldest.
        oldest = next(iter(self.windows.values()))
        return min(oldest.first_offset, next_offset), oldest.opened_wall

    def _open(self, task_id: str, start: float, offset: int, now: float) -> OpenWindow:
        window = OpenWindow(task_id, start, start + self.interval, offset, now, now)
        self.windows[(task_id, start)] = window
        heapq.heappush(self._by_end, (window.end, task_id, start))
        self._open_by_task.setdefault(task_id, []).append(start)
        return window

    def _late_window(self, change: Change, memory: TaskMemory, now: float) -> OpenWindow:
        starts = self._open_by_task.get(change.task_id)
        if starts:
            # The task's window that closes last. A late change may be newer than the changes
            # of an open window (stream time jumps ahead of a backlog read out of source
            # order); put into an earlier-closing window, it made the later window's fields
            # look older than applied, and that window was dropped as stale with its event ids.
            return self.windows[(change.task_id, max(starts))]
        current = math.floor(self.stream_time / self.interval) * self.interval
        return self._open(change.task_id, max(current, memory.closed_until), change.offset, now)


def close_window(window: OpenWindow, memory: TaskMemory, now: float,
                 dedupe_retention: float = 3600.0) -> Emitted:
    """Collapse one window into a `TaskUpdate` dict and record it in the task's memory."""
    ordered = sorted(window.changes, key=_ORDER)
    count = len(ordered)
    delay = max(0.0, now - window.last_seen_wall)
    # One pass over the window's changes for everything but the fields (windows hold a few
    # changes each, and a pass per property cost more than the rest of the close).
    deleting = with_activity = False
    newest = NEVER
    newest_text = ""
    source_key = project = None
    author = None
    event_ids = []
    for change in ordered:
        kind = change.kind
        if kind == "deleted":
            deleting = True
        elif kind == "created" or kind == "activity":
            with_activity = True
        if change.at > newest:
            newest, newest_text = change.at, change.occurred_at
        if change.source_key is not None:
            source_key = change.source_key
        if change.project is not None:
            project = change.project
        if change.author.get("kind") != "technical":
            author = change.author
        event_ids.append(change.event_id)
    if memory.deleted and not deleting:
        return Emitted(window.task_id, None, "stale", delay, count)
    merged, times = _merge_fields(ordered, memory)
    if not (deleting or merged or with_activity):
        return Emitted(window.task_id, None, "stale", delay, count)
    last = ordered[-1]
    update = {
        "schema_version": SCHEMA_VERSION,
        "update_id": update_id(window.task_id, "partial", window.start),
        "task_id": window.task_id,
        "source": last.source,
        "source_key": source_key,
        "project": project,
        "op": "delete" if deleting else "upsert",
        "box_ids": [],
        "left_box_ids": [],
        "changes": {} if deleting else merged,
        # The last change that names a person; the technical user only when none does.
        "author": author if author is not None else last.author,
        "sync_type": "partial",
        "source_updated_at": newest_text if _CANONICAL.fullmatch(newest_text) else iso(newest),
        "window_start": iso(window.start),
        "window_end": iso(window.end),
        "collapsed": count,
        "event_ids": event_ids,
    }
    memory.closed_until = max(memory.closed_until, window.end)
    memory.field_times.update(times)
    memory.deleted = memory.deleted or deleting
    added = {change.event_id: (change.at, change.origin) for change in ordered}
    if _remember(memory, added, window.end - dedupe_retention, dedupe_retention):
        # The memory's own dict, not a copy: it is written to the cache within this batch,
        # and a later window of the task in the same batch only adds to it.
        return Emitted(window.task_id, update, None, delay, count, times, window.end,
                       memory.recent, recent_whole=True)
    return Emitted(window.task_id, update, None, delay, count, times, window.end, added)


def _remember(memory: TaskMemory, added: dict[str, tuple[float, str]], forget_before: float,
              retention: float) -> bool:
    """Add a window's event ids to the task's; True when older ones were dropped (the cache
    row then takes the whole set instead of the added ids).

    Ids are dropped in bulk, once the oldest is twice the retention old, not as each passes
    the retention: the row of a task that changes every window then mostly grows by its new
    ids (linear) instead of being rewritten with the whole hour's ids each time (quadratic).
    Every id is still remembered for at least the retention, as deduplication needs."""
    recent = memory.recent
    oldest = memory.recent_oldest if recent else math.inf
    recent.update(added)
    for at, _ in added.values():
        if at < oldest:
            oldest = at
    if oldest >= forget_before - retention:
        memory.recent_oldest = oldest
        return False
    # Some id is twice the retention old (or the oldest is not known, after a load): look.
    stale = [event_id for event_id, (at, _) in recent.items() if at < forget_before]
    for event_id in stale:
        del recent[event_id]
    memory.recent_oldest = min((at for at, _ in recent.values()), default=math.inf)
    return bool(stale)


def epoch_seconds(text: str) -> float:
    """An ISO-8601 time with a zone → epoch seconds. The form ingest writes
    (`YYYY-MM-DDTHH:MM:SS.mmmZ`) takes a cached per-second path; others the general parser."""
    if len(text) == 24 and text[19] == "." and text[23] == "Z":
        return _second_epoch(text[:19]) + int(text[20:23]) / 1000
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("occurred_at has no time zone")
    return moment.timestamp()


# The form ingest writes, which iso() gives back for the time it parses to.
_CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", re.ASCII)


@functools.lru_cache(maxsize=4096)
def _second_epoch(second: str) -> float:
    return datetime.fromisoformat(second).replace(tzinfo=UTC).timestamp()


def _merge_fields(ordered: list[Change], memory: TaskMemory
                  ) -> tuple[dict[str, Any], dict[str, float]]:
    merged: dict[str, Any] = {}
    times: dict[str, float] = {}
    applied = memory.field_times
    if not applied or max(applied.values()) <= ordered[0].at:
        # The usual case: no change of the window is older than a field already applied.
        for change in ordered:
            changes = change.changes
            if changes:
                merged.update(changes)
                times.update(dict.fromkeys(changes, change.at))
        return merged, times
    for change in ordered:
        for name, value in change.changes.items():
            # A late change never overwrites a value applied from a newer change.
            if memory.field_times.get(name, NEVER) > change.at:
                continue
            merged[name] = value
            times[name] = change.at
    return merged, times
