"""Reference state, pure: boxes, permission grants and OKR links as the compacted topics say.

`apply()` takes one record of `box.definitions`, `jira.permissions` or `okr.links` (key and
decoded value, or None for a tombstone) and updates the state; replaying a topic from its start
rebuilds it exactly, whatever was applied before, because each key's last record wins.
No I/O here: the wiring (issue 4) reads the topics to their end before filtering anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from schemas.reference import Box, KeyResultLink, PermissionGrant

BROWSE_PROJECTS = "BROWSE_PROJECTS"
BOARD_MEMBER = "BOARD_MEMBER"


class BadReference(ValueError):
    """A record that is not a valid Box, PermissionGrant or KeyResultLink (dead-lettered)."""


@dataclass
class ReferenceState:
    boxes: dict[str, Box] = field(default_factory=dict)
    # (user id, project) -> permission keys
    grants: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    links: dict[str, KeyResultLink] = field(default_factory=dict)

    def apply(self, topic: str, key: str, value: dict[str, Any] | None) -> None:
        """Apply one record of a reference topic (by its unprefixed name)."""
        try:
            if topic == "box.definitions":
                self._apply_box(key, value)
            elif topic == "jira.permissions":
                self._apply_grant(key, value)
            elif topic == "okr.links":
                self._apply_link(key, value)
            else:
                raise BadReference(f"{topic} is not a reference topic")
        except ValidationError as exc:
            raise BadReference(f"{topic} record {key!r}: {exc.error_count()} invalid field(s): "
                               f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']}") from None

    def may(self, user_id: str | None, project: str, permission: str) -> bool:
        """Does the user hold the permission on the project (a Jira key or trello:<board>)?"""
        if user_id is None:
            return False
        return permission in self.grants.get((user_id, project), frozenset())

    def _apply_box(self, key: str, value: dict[str, Any] | None) -> None:
        if value is None:
            self.boxes.pop(key, None)
            return
        box = Box.model_validate(value)
        if box.box_id != key:
            raise BadReference(f"box.definitions key {key!r} differs from box_id {box.box_id!r}")
        self.boxes[key] = box

    def _apply_grant(self, key: str, value: dict[str, Any] | None) -> None:
        user_id, sep, project = key.partition("|")
        if not sep or not user_id or not project:
            raise BadReference(f"jira.permissions key {key!r} is not <user id>|<project>")
        if value is None:
            self.grants.pop((user_id, project), None)
            return
        grant = PermissionGrant.model_validate(value)
        if (grant.user_id, grant.project) != (user_id, project):
            raise BadReference(f"jira.permissions key {key!r} differs from its grant")
        self.grants[(user_id, project)] = frozenset(grant.permissions)

    def _apply_link(self, key: str, value: dict[str, Any] | None) -> None:
        if value is None:
            self.links.pop(key, None)
            return
        link = KeyResultLink.model_validate(value)
        if link.key_result_id != key:
            raise BadReference(f"okr.links key {key!r} differs from key_result_id")
        self.links[key] = link
