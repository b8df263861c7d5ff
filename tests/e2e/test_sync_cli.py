"""`boxsync command` and `boxsync runs` as a user runs them, against the real local stack.

Each test that touches Kafka has its own topic prefix; each test that writes `sync_runs`
uses its own box and run ids (the database is shared) and deletes its rows afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from psycopg.types.json import Jsonb

from processors.settings import Settings
from processors.store import db
from schemas.commands import SyncCommand
from tests.support.kafka import (
    ROOT,
    create_topics,
    delete_topics,
    free_port,
    read_records,
    unique_prefix,
    worker_env,
)
from tests.support.tenants import drop_tenant, migrate_tenant

pytestmark = pytest.mark.e2e

COMMAND_OPTIONS = ("--box", "--user", "--user-kind", "--user-name", "--source", "--param",
                   "--id", "--wait", "--json")
RUNS_OPTIONS = ("--box", "--limit", "--state", "--json")


# --- fixtures (base_settings and database_url: tests/conftest.py) ----------------------------


@pytest.fixture
def settings(base_settings: Settings, database_url: str) -> Iterator[Settings]:
    """This test's own topics (a unique prefix), deleted afterwards."""
    settings = base_settings.model_copy(update={"topic_prefix": unique_prefix(),
                                                "partitions": 2})
    create_topics(settings)
    migrate_tenant(settings)
    yield settings
    delete_topics(settings.kafka_bootstrap, settings.topic_prefix)
    drop_tenant(settings)


@pytest.fixture
def box_id(database_url: str) -> Iterator[str]:
    """A box id no other test uses; its rows in sync_runs and command_log go afterwards."""
    box = f"box-{uuid.uuid4().hex[:10]}"
    yield box
    with db.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM sync_runs WHERE box_id = %s", (box,))
        conn.execute("DELETE FROM command_log WHERE box_id = %s", (box,))


def boxsync(*args: str, settings: Settings | None = None, timeout: float = 30,
            **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(worker_env(settings) if settings else {}), **extra_env}
    return subprocess.run([sys.executable, "-m", "processors.cli.main", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert result.stderr.startswith("boxsync: "), result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


# --- boxsync command ----------------------------------------------------------------------


def test_command_publishes_a_valid_sync_command(settings: Settings) -> None:
    result = boxsync("command", "resync_all", "--user", "u1", settings=settings)
    assert result.returncode == 0, result.stderr
    command_id = result.stdout.strip()
    [record] = read_records(settings, "sync.commands", expect=1, timeout=10)
    assert record.key is None  # no --box: no key (contract §1)
    command = SyncCommand.model_validate_json(record.value)
    assert command.command_id == command_id and command.type == "resync_all"
    assert command.box_id is None and command.params == {}
    assert command.requested_by.model_dump() == {"kind": "user", "id": "u1", "name": None,
                                                 "source": "app"}
    age = datetime.now(UTC) - command.requested_at
    assert timedelta(0) <= age < timedelta(seconds=30)


def test_command_is_keyed_by_box_and_parses_params(settings: Settings) -> None:
    result = boxsync("command", "open_box", "--box", "B-7", "--user", "5b10", "--source",
                     "jira", "--user-name", "Ann", "--param", "force=true", "--param",
                     "limit=12", "--param", "note=x=1", "--id", "cmd-fixed-1", "--json",
                     settings=settings)
    assert result.returncode == 0, result.stderr
    published = orjson.loads(result.stdout.splitlines()[0])
    assert published["command_id"] == "cmd-fixed-1" and published["key"] == "B-7"
    [record] = read_records(settings, "sync.commands", expect=1, timeout=10)
    assert record.key == b"B-7"
    value = orjson.loads(record.value)
    assert value["params"] == {"force": True, "limit": 12, "note": "x=1"}
    assert value["requested_by"] == {"kind": "user", "id": "5b10", "name": "Ann",
                                     "source": "jira"}
    assert value["requested_at"].endswith("Z")
    assert SyncCommand.model_validate(value).force is True


@pytest.mark.parametrize("args, names", [
    (["command", "resync_everything", "--user", "u1"], "TYPE"),
    (["command", "resync_all", "--user", "u1", "--param", "force"], "--param"),
    (["command", "resync_all", "--user", "u1", "--param", "=true"], "--param"),
    (["command", "resync_all"], "--user"),
    (["command", "resync_all", "--user", "u1", "--id", "  "], "command_id"),
    (["command", "resync_box", "--user", "u1"], "--box"),
], ids=["type", "param-no-equals", "param-no-key", "no-user", "blank-id", "box-needed"])
def test_bad_input_is_one_line_and_publishes_nothing(settings: Settings, args: list[str],
                                                     names: str) -> None:
    result = boxsync(*args, settings=settings)
    assert names in one_line_error(result)
    assert result.returncode == 2
    assert read_records(settings, "sync.commands", timeout=1, settle=0.5) == []


def test_unreachable_kafka_is_one_line_naming_the_address() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = boxsync("command", "resync_all", "--user", "u1",
                     BOXSYNC_KAFKA_BOOTSTRAP=address)
    assert f"cannot reach Kafka at {address}" in one_line_error(result)
    assert result.returncode == 1


def test_wait_without_a_worker_times_out_with_exit_5(settings: Settings) -> None:
    started = time.monotonic()
    result = boxsync("command", "resync_all", "--user", "u1", "--wait", "2",
                     settings=settings)
    assert result.returncode == 5, result.stderr
    assert time.monotonic() - started >= 2
    command_id = result.stdout.strip()
    assert len(command_id) == 32  # printed before waiting
    assert f"no status for command {command_id} within 2 s" in result.stderr


# --- boxsync runs -------------------------------------------------------------------------


def insert_run(url: str, box: str, *, state: str, queued_at: datetime,
               finished: bool) -> str:
    run_id = uuid.uuid4().hex
    started = queued_at + timedelta(seconds=1)
    with db.connect(url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO sync_runs (run_id, command_id, box_id, sync_type, state, reason,
                   requested_by, author, processed, total, emitted, queued_at, started_at,
                   finished_at)
               VALUES (%s, %s, %s, 'full', %s, %s, %s, %s, 3, 10, 2, %s, %s, %s)""",
            (run_id, f"cmd-{run_id}", box, state, "source_unavailable" if state == "failed"
             else None, Jsonb({"kind": "user", "id": "u1", "source": "app"}),
             Jsonb({"kind": "scope_owner", "id": "o1", "name": "Olga", "source": "jira"}),
             queued_at, started, started + timedelta(seconds=75) if finished else None))
    return run_id


def test_runs_of_a_box_without_runs_prints_a_friendly_line(box_id: str) -> None:
    result = boxsync("runs", "--box", box_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(f"no sync runs for box {box_id} yet")
    assert "commands" in result.stdout


def test_runs_lists_newest_first(database_url: str, box_id: str) -> None:
    now = datetime.now(UTC)
    older = insert_run(database_url, box_id, state="failed", finished=True,
                       queued_at=now - timedelta(minutes=5))
    newer = insert_run(database_url, box_id, state="running", finished=False,
                       queued_at=now - timedelta(minutes=1))
    result = boxsync("runs", "--box", box_id, "--json")
    assert result.returncode == 0, result.stderr
    document = orjson.loads(result.stdout)
    assert [run["run_id"] for run in document["runs"]] == [newer, older]
    assert document["runs"][1]["reason"] == "source_unavailable"
    assert document["commands"] == []
    table = boxsync("runs", "--box", box_id).stdout.splitlines()
    assert table[0].split()[:4] == ["run", "box", "type", "state"]
    assert table[1].startswith(newer[:12]) and "running for" in table[1] and "Olga" in table[1]
    assert table[2].startswith(older[:12]) and "1m15s" in table[2]


def test_runs_state_filter(database_url: str, box_id: str) -> None:
    insert_run(database_url, box_id, state="completed", finished=True,
               queued_at=datetime.now(UTC))
    result = boxsync("runs", "--box", box_id, "--state", "failed", "--json")
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout)["runs"] == []


# --- help -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command, options", [("command", COMMAND_OPTIONS),
                                              ("runs", RUNS_OPTIONS)])
def test_help_mentions_every_option(command: str, options: tuple[str, ...]) -> None:
    result = boxsync(command, "--help")
    assert result.returncode == 0, result.stderr
    for option in options:
        assert option in result.stdout, option


def test_command_help_explains_every_type_and_exit_code() -> None:
    text = boxsync("command", "--help").stdout
    for command_type in ("open_box", "resync_box", "resync_all", "plugin_toggled",
                         "plugin_updated", "cache_cleared", "scope_saved", "incremental_sync",
                         "jira_index_status", "clear_box_warnings"):
        assert f"  {command_type} " in text, command_type
    for code in ("0  completed", "3  refused", "4  failed", "5  no final status"):
        assert code in text
