"""SyncCommand and SyncStatus (contract §2, §4): validation, defaults, parameter parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.commands import (
    COMMAND_REFUSALS,
    FAILURE_REASONS,
    INCREMENTAL_SKIPS,
    REFUSAL_REASONS,
    SyncCommand,
    SyncStatus,
    parse_flag,
)

ALICE = {"kind": "user", "id": "557058:alice", "name": "Alice", "source": "jira"}


def command(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {"command_id": "c-1", "type": "resync_box", "box_id": "B1",
                             "requested_by": ALICE, "requested_at": "2026-03-29T10:00:00Z"}
    value.update(overrides)
    return value


def status(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {"box_id": "B1", "state": "queued", "at": "2026-03-29T10:00:00Z"}
    value.update(overrides)
    return value


def test_a_command_decodes_with_defaults() -> None:
    parsed = SyncCommand.model_validate(command(box_id=None, type="resync_all"))
    assert parsed.schema_version == 1 and parsed.params == {} and parsed.box_id is None
    assert parsed.requested_at == datetime(2026, 3, 29, 10, tzinfo=UTC)
    assert parsed.requested_by.id == "557058:alice"


def test_a_naive_requested_at_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        SyncCommand.model_validate(command(requested_at="2026-03-29T10:00:00"))


def test_an_offset_time_is_normalized_to_utc() -> None:
    warsaw = timezone(timedelta(hours=2))
    parsed = SyncCommand.model_validate(
        command(requested_at=datetime(2026, 3, 29, 12, tzinfo=warsaw)))
    assert parsed.requested_at.utcoffset() == timedelta(0)
    assert parsed.model_dump(mode="json")["requested_at"] == "2026-03-29T10:00:00Z"


@pytest.mark.parametrize("command_id", ["", "   "])
def test_an_empty_command_id_is_refused(command_id: str) -> None:
    with pytest.raises(ValidationError):
        SyncCommand.model_validate(command(command_id=command_id))


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(ValidationError):
        SyncCommand.model_validate(command(type="resync_everything"))


def test_a_command_without_requester_is_refused() -> None:
    value = command()
    del value["requested_by"]
    with pytest.raises(ValidationError):
        SyncCommand.model_validate(value)


def test_extra_fields_are_ignored_and_the_model_is_frozen() -> None:
    parsed = SyncCommand.model_validate(command(source_app="bigpicture", priority=3))
    assert "source_app" not in parsed.model_dump()
    with pytest.raises(ValidationError):
        parsed.box_id = "B2"  # type: ignore[misc]


@pytest.mark.parametrize(("params", "force"), [
    ({}, False), ({"force": True}, True), ({"force": "true"}, True), ({"force": "TRUE"}, True),
    ({"force": False}, False), ({"force": "false"}, False), ({"force": 1}, False),
    ({"force": "yes"}, False)])
def test_force_accepts_a_boolean_or_the_cli_string(params: dict[str, Any], force: bool) -> None:
    assert SyncCommand.model_validate(command(params=params)).force is force


@pytest.mark.parametrize(("params", "corrupted"), [
    ({"corrupted": True}, True), ({"corrupted": False}, False), ({"corrupted": "true"}, True),
    ({"corrupted": "False"}, False), ({}, None), ({"corrupted": "maybe"}, None),
    ({"corrupted": 0}, None), ({"corrupted": None}, None)])
def test_corrupted_is_a_boolean_or_none(params: dict[str, Any], corrupted: bool | None) -> None:
    parsed = SyncCommand.model_validate(command(type="jira_index_status", box_id=None,
                                                params=params))
    assert parsed.corrupted is corrupted


def test_parse_flag_trims_whitespace() -> None:
    assert parse_flag(" true ") is True and parse_flag("") is None


def test_a_status_decodes_with_defaults() -> None:
    parsed = SyncStatus.model_validate(status())
    assert (parsed.processed, parsed.total, parsed.read_only, parsed.reason) == (0, None, False,
                                                                                 None)
    assert parsed.run_id is None and parsed.command_id is None and parsed.sync_type is None
    assert parsed.model_dump(mode="json")["at"] == "2026-03-29T10:00:00Z"


def test_a_tenant_wide_status_has_no_box() -> None:
    parsed = SyncStatus.model_validate(status(box_id=None, state="refused",
                                              reason="bulk_resync_not_allowed"))
    assert parsed.box_id is None


@pytest.mark.parametrize("bad", [
    {"at": "2026-03-29T10:00:00"}, {"state": "paused"}, {"processed": -1}, {"total": -5},
    {"sync_type": "nightly"}, {"state": "refused"}, {"state": "failed", "reason": ""}])
def test_an_invalid_status_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SyncStatus.model_validate(status(**bad))


def test_a_status_round_trips_through_json() -> None:
    parsed = SyncStatus.model_validate(status(
        state="running", run_id="r1", command_id="c-1", sync_type="full", processed=40,
        total=120, read_only=True, requested_by=ALICE, future_field="ignored"))
    assert SyncStatus.model_validate_json(parsed.model_dump_json()) == parsed


def test_the_reason_codes_are_listed_once() -> None:
    assert len(REFUSAL_REASONS) == len(set(REFUSAL_REASONS))
    assert set(COMMAND_REFUSALS) | set(INCREMENTAL_SKIPS) | set(FAILURE_REASONS) == \
        set(REFUSAL_REASONS)
    assert {"forbidden", "not_available_for_non_scope_box", "box_closed",
            "jira_index_corrupted", "bulk_resync_not_allowed", "unknown_box", "invalid_command",
            "source_auth_failed", "source_unavailable", "interrupted"} <= set(REFUSAL_REASONS)
