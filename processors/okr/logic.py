"""OKR progress, pure (behaviour.md "OKR").

A key result links tasks directly (`task_ids`) and through boxes (`box_ids`: every task the
box holds). When a linked task changes status (or is deleted), the key result's progress is
published: for `auto` key results, linked tasks in the done status category over all linked
tasks, times 100; for `manual` ones, only the task's status (`done`, `total`, `progress_pct`
null). Linked tasks are a set: a task linked directly and through a box counts once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from processors.wire import SCHEMA_VERSION
from schemas.reference import KeyResultLink

STATUS_FIELDS = ("status", "status_category")


def touches_status(update: Mapping[str, Any]) -> bool:
    """Does this task update change what a key result reports?"""
    if update.get("op") == "delete":
        return True
    changes = update.get("changes") or {}
    return any(name in changes for name in STATUS_FIELDS)


def linked_key_results(links: Iterable[KeyResultLink], task_id: str,
                       box_ids: Iterable[str]) -> list[KeyResultLink]:
    """The key results linked to the task directly or through one of its boxes, by id."""
    boxes = set(box_ids)
    found = {link.key_result_id: link for link in links
             if task_id in link.task_ids or boxes.intersection(link.box_ids)}
    return [found[key] for key in sorted(found)]


@dataclass(frozen=True, slots=True)
class Tally:
    done: int
    total: int

    @property
    def percent(self) -> float:
        return round(100.0 * self.done / self.total, 2) if self.total else 0.0


def progress(link: KeyResultLink, task_id: str, status: Any, status_category: Any,
             tally: Tally | None, at: str) -> dict[str, Any]:
    """The `KeyResultProgress` message (a dict, as the hot path writes it)."""
    auto = link.mode == "auto" and tally is not None
    return {
        "schema_version": SCHEMA_VERSION,
        "key_result_id": link.key_result_id,
        "objective_id": link.objective_id,
        "mode": link.mode,
        "task_id": task_id,
        "task_status": status,
        "status_category": status_category,
        "done": tally.done if auto and tally else None,
        "total": tally.total if auto and tally else None,
        "progress_pct": tally.percent if auto and tally else None,
        "at": at,
    }
