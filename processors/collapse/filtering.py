"""The filters and OKR progress as the collapse stage applies them (wiring around the pure
processors.filters.logic and processors.okr.logic).

- before a change joins its window: the permission filter (a denied change is counted
  `permission_denied` and contributes nothing);
- when a window closes: routing to boxes (`box_ids`, `left_box_ids`), the task's membership
  remembered with it; an update that reaches no box is not emitted (counted with its reason);
- after the cache write: `KeyResultProgress` for key results linked to a task whose status
  changed, counted from the cache (every linked task once, whichever worker holds it).

With `BOXSYNC_FILTERS_ENABLED=false` (bring-up and benchmarks) every change passes and every
update is emitted with no boxes, as before the filters existed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from processors.collapse.logic import Change, TaskMemory
from processors.filters.logic import permitted
from processors.filters.reader import ReferenceReader
from processors.okr.logic import Tally, linked_key_results, progress, touches_status
from processors.runtime.loop import Output
from processors.settings import Settings
from processors.store.tasks import label_tuple, okr_tallies
from processors.wire import iso_utc, message_bytes
from schemas.reference import KeyResultLink


@dataclass(frozen=True, slots=True)
class StatusChange:
    link: KeyResultLink
    task_id: str
    status: Any
    status_category: Any


class CollapseFilters:
    def __init__(self, settings: Settings, connect: Callable[[], psycopg.Connection],
                 okr_topic: str) -> None:
        self.enabled = settings.filters_enabled
        self.reader = ReferenceReader(settings, connect) if self.enabled else None
        self.filtered: Counter[str] = Counter()
        self.okr_topic = okr_topic
        self._status_changes: list[StatusChange] = []

    def load(self) -> None:
        if self.reader is not None:
            self.reader.load()

    def refresh(self) -> None:
        if self.reader is not None:
            self.reader.refresh()

    def permits(self, change: Change, memory: TaskMemory) -> bool:
        """The permission filter, per change, before the collapse."""
        if self.reader is None:
            return True
        if change.project:
            memory.project = change.project
        if permitted(self.reader.state.grants, change.source, change.project or memory.project,
                     change.author):
            return True
        self.filtered["permission_denied"] += 1
        return False

    def route(self, update: dict[str, Any], memory: TaskMemory) -> bool:
        """Fill in the update's boxes and remember the task's membership; False when the
        update reaches no box and is not to be emitted."""
        if self.reader is None:
            return True
        changes = update["changes"]
        labels = label_tuple(changes["labels"]) if "labels" in changes else memory.labels
        project = update.get("project") or memory.project
        routing = self.reader.directory().route(update["task_id"], project, labels,
                                                memory.box_ids, update["op"] == "delete")
        update["box_ids"] = list(routing.box_ids)
        update["left_box_ids"] = list(routing.left_box_ids)
        memory.project, memory.labels, memory.box_ids = project, labels, routing.members
        self.filtered.update(routing.filtered)
        if touches_status(update):
            self._note_status_change(update, routing.members or tuple(update["box_ids"]))
        return routing.delivered

    def okr_outputs(self, conn: psycopg.Connection, now: float) -> list[Output]:
        """Progress of every key result whose linked task changed status in this batch; the
        automatic ones counted from the cache in one query for the batch."""
        changes, self._status_changes = self._status_changes, []
        at = iso_utc(datetime.fromtimestamp(now, tz=UTC))
        counted = {change.link.key_result_id: change.link for change in changes
                   if change.link.mode == "auto"}
        tallies = dict(zip(counted, (Tally(done=done, total=total) for total, done in
                                     okr_tallies(conn, [(link.task_ids, link.box_ids)
                                                        for link in counted.values()])),
                           strict=True))
        outputs = []
        for change in changes:
            message = progress(change.link, change.task_id, change.status,
                               change.status_category, tallies.get(change.link.key_result_id), at)
            outputs.append(Output(self.okr_topic, change.link.key_result_id.encode(),
                                  message_bytes(message)))
        return outputs

    def reset(self) -> None:
        self.filtered.clear()
        self._status_changes.clear()

    def _note_status_change(self, update: dict[str, Any], box_ids: tuple[str, ...]) -> None:
        assert self.reader is not None
        candidates = self.reader.key_results(update["task_id"], box_ids)
        links = linked_key_results(candidates, update["task_id"], box_ids)
        changes = update["changes"]
        for link in links:
            self._status_changes.append(StatusChange(
                link, update["task_id"], changes.get("status"), changes.get("status_category")))
