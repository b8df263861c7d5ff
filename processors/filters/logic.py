"""The filters, pure (behaviour.md "Filters" and "Permissions"): which changes count, and which
boxes an update reaches.

- `permitted()`: a change counts only when its author may see the task: `BROWSE_PROJECTS` on the
  Jira project, `BOARD_MEMBER` on the Trello board; the technical user always passes. Applied
  per change before the collapse, so a denied change gives its window no field and no author.
- `Directory.members()`: the boxes whose scope holds a task. Own scope: the task's project (a
  Jira key or `trello:<board>`) is in the scope and the task has every label of `labels_all`,
  or the box lists the task in `manual_tasks`. A sub-scope box holds only tasks its nearest
  own-scope ancestor holds: those its own scope selects (no projects or boards named: any of
  the ancestor's), or that it lists manually. A `none` box holds nothing.
- `Directory.route()`: of those, the boxes the update may reach: not closed, not archived, not
  in corrupted scope, not waiting for a full sync (each a counted reason); `none` boxes that
  would select the task count `non_scope_box`. Boxes that held the task and no longer select
  it are told in `left_box_ids`, under the same state rules. An update that reaches no box is
  dropped and counted once, with the first reason (`no_box` when nothing selects the task);
  an update that reaches some boxes counts each box it skipped.

No I/O; the wiring (processors.collapse.agents) builds a Directory whenever the reference data
or the box flags change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from schemas.reference import Box

BROWSE_PROJECTS = "BROWSE_PROJECTS"
BOARD_MEMBER = "BOARD_MEMBER"
NO_GRANT: frozenset[str] = frozenset()


def permitted(grants: Mapping[tuple[str, str], frozenset[str]], source: str,
              project: str | None, author: Mapping[str, object]) -> bool:
    """May the author of a change see its task (as `jira.permissions` says)?"""
    if author.get("kind") == "technical":
        return True
    user_id = author.get("id")
    if not isinstance(user_id, str) or not project:
        return False  # nobody to check, or no project to check against: not provably allowed
    needed = BOARD_MEMBER if source == "trello" else BROWSE_PROJECTS
    return needed in grants.get((user_id, project), NO_GRANT)


@dataclass(frozen=True, slots=True)
class BoxFlags:
    """What boxsync itself knows of a box (PostgreSQL `box_state`)."""

    corrupted: bool = False
    waiting_full_sync: bool = False


NO_FLAGS = BoxFlags()
# Distinct (project, labels) pairs remembered per Directory; a new one is built on every
# reference change, so this only bounds memory between changes.
MEMBERS_CACHE_SIZE = 50_000


@dataclass(frozen=True, slots=True)
class Routing:
    members: tuple[str, ...]  # boxes whose scope holds the task after this update
    box_ids: tuple[str, ...]  # members the update reaches
    left_box_ids: tuple[str, ...]  # former members that drop the task
    filtered: tuple[str, ...]  # reasons to count: one per skipped box, or the drop reason

    @property
    def delivered(self) -> bool:
        return bool(self.box_ids or self.left_box_ids)


def scope_key(board_or_project: str, trello: bool) -> str:
    """A scope entry as a task's project: Jira keys as they are, boards as `trello:<id>`."""
    if trello and not board_or_project.startswith("trello:"):
        return f"trello:{board_or_project}"
    return board_or_project


def scope_projects(box: Box) -> list[str]:
    return [*box.scope.jira_projects,
            *(scope_key(board, True) for board in box.scope.trello_boards)]


@dataclass
class Directory:
    """The boxes indexed for routing one task at a time."""

    boxes: Mapping[str, Box]
    flags: Mapping[str, BoxFlags] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_project: dict[str, list[Box]] = {}
        self._by_task: dict[str, list[Box]] = {}
        self._subs_of: dict[str, list[Box]] = {}
        # Per box, computed once per reference change rather than once per update.
        self._projects: dict[str, frozenset[str]] = {}
        self._labels: dict[str, frozenset[str]] = {}
        self._refusals: dict[str, str | None] = {}
        self._members: dict[tuple[str | None, tuple[str, ...]], tuple[list[Box], list[Box]]] = {}
        for box in self.boxes.values():
            self._index(box)

    def _index(self, box: Box) -> None:
        self._projects[box.box_id] = frozenset(scope_projects(box))
        self._labels[box.box_id] = frozenset(box.scope.labels_all)
        self._refusals[box.box_id] = self._refusal(box)
        for project in self._projects[box.box_id]:
            self._by_project.setdefault(project, []).append(box)
        for task_id in box.manual_tasks:
            self._by_task.setdefault(task_id, []).append(box)
        if box.scope_type == "sub":
            ancestor = self.own_ancestor(box)
            if ancestor is not None:
                self._subs_of.setdefault(ancestor.box_id, []).append(box)

    def own_ancestor(self, box: Box) -> Box | None:
        """The nearest own-scope ancestor of a box (None when the chain has none or loops)."""
        seen = {box.box_id}
        parent_id = box.parent_box_id
        while parent_id is not None and parent_id not in seen:
            parent = self.boxes.get(parent_id)
            if parent is None:
                return None
            if parent.scope_type == "own":
                return parent
            seen.add(parent_id)
            parent_id = parent.parent_box_id
        return None

    def members(self, task_id: str, project: str | None, labels: Iterable[str]
                ) -> tuple[list[Box], list[Box]]:
        """(boxes holding the task, `none` boxes that would select it). Tasks no box lists
        by id share the answer for their project and labels (cached until the next change)."""
        label_key = tuple(sorted(set(labels)))
        if task_id in self._by_task:
            return self._select(task_id, project, frozenset(label_key))
        cached = self._members.get((project, label_key))
        if cached is None:
            if len(self._members) >= MEMBERS_CACHE_SIZE:
                self._members.clear()
            cached = self._select(task_id, project, frozenset(label_key))
            self._members[(project, label_key)] = cached
        return cached

    def _select(self, task_id: str, project: str | None, labels: frozenset[str]
                ) -> tuple[list[Box], list[Box]]:
        own: dict[str, Box] = {}
        non_scope: dict[str, Box] = {}
        for box in self._candidates(task_id, project):
            if not self._selects(box, task_id, project, labels, require_project=True):
                continue
            if box.scope_type == "own":
                own[box.box_id] = box
            elif box.scope_type == "none":
                non_scope[box.box_id] = box
        held = dict(own)
        for ancestor_id in own:
            for sub in self._subs_of.get(ancestor_id, ()):
                if self._selects(sub, task_id, project, labels, require_project=False):
                    held[sub.box_id] = sub
        return sorted(held.values(), key=_box_id), sorted(non_scope.values(), key=_box_id)

    def _selects(self, box: Box, task_id: str, project: str | None, labels: frozenset[str],
                 *, require_project: bool) -> bool:
        if task_id in box.manual_tasks:
            return True
        projects = self._projects[box.box_id]
        if projects and project not in projects:
            return False
        if not projects and require_project:
            return False
        return labels >= self._labels[box.box_id]

    def route(self, task_id: str, project: str | None, labels: Iterable[str],
              previous: Iterable[str], deleting: bool) -> Routing:
        """Where one update goes (see the module docstring)."""
        held, non_scope = self.members(task_id, project, labels)
        held_ids = [box.box_id for box in held]
        if deleting:
            targets = sorted(set(previous) | set(held_ids))
            return self._routing((), targets, (), non_scope)
        left = sorted(set(previous) - set(held_ids))
        return self._routing(tuple(held_ids), held_ids, left, non_scope)

    def refusal(self, box: Box) -> str | None:
        """Why a box takes no update now, or None when it does."""
        return self._refusals[box.box_id]

    def _refusal(self, box: Box) -> str | None:
        flags = self.flags.get(box.box_id, NO_FLAGS)
        if box.status == "closed":
            return "box_closed"
        if box.archived:
            return "box_archived"
        if flags.corrupted:
            return "corrupted_scope"
        if flags.waiting_full_sync:
            return "waiting_for_full_sync"
        if box.scope_type == "none":
            return "non_scope_box"
        return None

    def _routing(self, members: tuple[str, ...], targets: Iterable[str], left: Iterable[str],
                 non_scope: list[Box]) -> Routing:
        reasons = ["non_scope_box" for _ in non_scope]
        reached = self._accepting(targets, reasons)
        gone = self._accepting(left, reasons)
        if not reached and not gone:
            return Routing(members, (), (), (reasons[0] if reasons else "no_box",))
        return Routing(members, tuple(reached), tuple(gone), tuple(reasons))

    def _accepting(self, box_ids: Iterable[str], reasons: list[str]) -> list[str]:
        accepted = []
        for box_id in box_ids:
            if box_id not in self.boxes:
                continue  # deleted since: nobody to tell
            reason = self._refusals[box_id]
            if reason is None:
                accepted.append(box_id)
            else:
                reasons.append(reason)
        return accepted

    def _candidates(self, task_id: str, project: str | None) -> list[Box]:
        by_project = self._by_project.get(project, []) if project else []
        return [*by_project, *self._by_task.get(task_id, ())]


def _box_id(box: Box) -> str:
    return box.box_id
