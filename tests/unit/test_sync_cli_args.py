"""The pure parts of `boxsync command` and `boxsync runs`: parameters, the command built,
which statuses end a command, and how runs are shown. No Kafka, no database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
import pytest

from processors.cli.commands_runs import format_duration, person_label, run_duration
from processors.cli.commands_sync import (
    COMMAND_HELP,
    COMMAND_TYPES,
    EXIT_FAILED,
    EXIT_REFUSED,
    FLAG_SETTLE_SECONDS,
    Follower,
    build_command,
    parse_params,
    parse_value,
    status_line,
)
from processors.errors import BoxsyncError
from schemas.commands import SyncStatus

NOW = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
PERSON = {"kind": "user", "id": "u1", "name": None, "source": "app"}


@pytest.mark.parametrize("text, value", [
    ("true", True), ("FALSE", False), ("12", 12), ("-3", -3), ("+4", 4), ("1.5", "1.5"),
    ("", ""), ("yes", "yes"), ("a=b", "a=b"),
])
def test_param_values(text: str, value: Any) -> None:
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def test_params_keep_everything_after_the_first_equals_sign() -> None:
    assert parse_params(["force=true", " note = x=y"]) == {"force": True, "note": " x=y"}


@pytest.mark.parametrize("items", [["force"], ["=1"], ["a=1", "a=2"]])
def test_bad_params_are_refused(items: list[str]) -> None:
    with pytest.raises(click.BadParameter):
        parse_params(items)


def test_build_command_defaults() -> None:
    command = build_command("resync_all", None, PERSON, {}, None, NOW)
    assert len(command.command_id) == 32 and command.requested_at == NOW
    assert command.box_id is None and command.requested_by.id == "u1"


def test_build_command_needs_a_box_for_box_commands() -> None:
    with pytest.raises(BoxsyncError, match="--box") as caught:
        build_command("resync_box", None, PERSON, {}, "c1", NOW)
    assert caught.value.exit_code == 2


def test_build_command_names_the_invalid_field() -> None:
    with pytest.raises(BoxsyncError, match="command_id") as caught:
        build_command("resync_all", None, PERSON, {}, "  ", NOW)
    assert caught.value.exit_code == 2


def status(state: str, *, command_id: str | None = "c1", run_id: str | None = None,
           **fields: Any) -> SyncStatus:
    reason = "forbidden" if state in ("refused", "failed") else None
    return SyncStatus.model_validate({"state": state, "command_id": command_id,
                                      "run_id": run_id, "reason": reason, "at": NOW, **fields})


def test_a_refusal_ends_the_command() -> None:
    follower = Follower("c1")
    assert not follower.accept(status("refused", command_id="other"), 0)
    assert follower.exit_code is None
    assert follower.accept(status("refused"), 0)
    assert follower.exit_code == EXIT_REFUSED


def test_a_queued_run_is_followed_to_its_end_by_run_id() -> None:
    follower = Follower("c1")
    assert follower.accept(status("queued", run_id="r1"), 0)
    assert follower.accept(status("running", command_id=None, run_id="r1"), 1)
    assert not follower.accept(status("completed", command_id=None, run_id="r2"), 2)
    assert follower.exit_code is None
    assert follower.accept(status("failed", command_id=None, run_id="r1"), 3)
    assert follower.exit_code == EXIT_FAILED


def test_a_completed_status_of_another_run_does_not_end_a_queued_run() -> None:
    follower = Follower("c1")
    follower.accept(status("queued", run_id="r1"), 0)
    follower.accept(status("completed", run_id="r0"), 1)  # names the command, not the run
    assert follower.exit_code is None
    follower.accept(status("completed", run_id="r1"), 2)
    assert follower.exit_code == 0


def test_flags_end_the_command_once_they_stop_coming() -> None:
    follower = Follower("c1")
    follower.accept(status("flagged", box_id="b1"), 10.0)
    follower.accept(status("flagged", box_id="b2"), 10.5)
    assert not follower.settled(10.5 + FLAG_SETTLE_SECONDS / 2)
    assert follower.settled(10.5 + FLAG_SETTLE_SECONDS)
    assert follower.exit_code is None


def test_status_line_shows_progress_and_run() -> None:
    line = status_line(status("running", run_id="r1", processed=3, total=10, read_only=True))
    assert line.split() == ["running", "reason=-", "processed=3/10", "read_only=true",
                            "run_id=r1", "box=-"]
    assert "processed=0/?" in status_line(status("queued"))


@pytest.mark.parametrize("seconds, text", [
    (0.04, "0.0s"), (12.34, "12.3s"), (75, "1m15s"), (3600, "1h00m"), (7621, "2h07m")])
def test_durations(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("row, text", [
    ({"elapsed_seconds": None, "finished_at": None, "state": "queued"}, "not started"),
    ({"elapsed_seconds": 5.0, "finished_at": None, "state": "running"}, "running for 5.0s"),
    ({"elapsed_seconds": 75.0, "finished_at": NOW, "state": "completed"}, "1m15s"),
    ({"elapsed_seconds": 75.0, "finished_at": None, "state": "failed"}, "-"),
])
def test_run_durations(row: dict[str, Any], text: str) -> None:
    assert run_duration(row) == text


def test_person_label_prefers_the_name() -> None:
    assert person_label({"kind": "user", "id": "u1", "name": "Ann"}) == "Ann"
    assert person_label({"kind": "user", "id": "u1", "name": None}) == "u1"
    assert person_label({"kind": "technical"}) == "technical"
    assert person_label(None) == "-"


def test_every_command_type_is_explained() -> None:
    assert set(COMMAND_HELP) == set(COMMAND_TYPES)
    width = max(len(name) for name in COMMAND_TYPES)
    assert all(len(f"    {name:<{width}}  {text}") <= 100 for name, text in COMMAND_HELP.items())
