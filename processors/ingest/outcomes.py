"""The three outcomes of ingesting one record, and the configuration ingest needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from processors.runtime.records import Rejected

__all__ = ["Accepted", "IngestConfig", "PassedOver", "Reference", "Rejected"]


@dataclass(frozen=True, slots=True)
class IngestConfig:
    max_event_bytes: int = 1024 * 1024
    default_jira_site: str | None = None
    field_map: Mapping[str, str] = field(default_factory=dict)
    # BOXSYNC_JIRA_INTEGRATION_ACCOUNT_ID: its `app` changes are likely echoes of write-backs.
    integration_account_id: str | None = None
    # Derived from field_map: normalized name -> the custom field ids mapped to it, the last
    # mapped first (the one that wins when several are present). Looked up per changed field.
    field_ids_by_target: Mapping[str, tuple[str, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        by_target: dict[str, tuple[str, ...]] = {}
        for field_id, target in self.field_map.items():
            by_target[target] = (field_id, *by_target.get(target, ()))
        object.__setattr__(self, "field_ids_by_target", by_target)


# Not frozen: a frozen dataclass's __init__ pays a setattr call per field, once per event.
@dataclass(slots=True)
class Accepted:
    """A normalized `ChangeEvent` (as a dict ready for orjson), keyed by its task id."""

    task_id: str
    change: dict[str, Any]
    source: str
    event: str
    sanitized: bool = False  # the body held NUL, controls or lone surrogates, now cleaned


@dataclass(slots=True)
class Reference:
    """A `ReferenceEvent` (a dict ready for orjson) for `sync.reference`, with its key."""

    key: str
    event_body: dict[str, Any]
    source: str
    event: str


@dataclass(slots=True)
class PassedOver:
    """A valid upstream record that boxsync does not act on; counted with its reason."""

    reason: str
    event: str
