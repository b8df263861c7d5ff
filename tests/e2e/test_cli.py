"""The `boxsync` command as a user runs it: help that teaches, one-line errors, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.kafka import ROOT, free_port

pytestmark = pytest.mark.e2e

COMMANDS = [
    [], ["stack"], ["stack", "up"], ["stack", "down"], ["stack", "status"], ["topics"],
    ["topics", "create"], ["db"], ["db", "migrate"], ["worker"], ["publish"], ["consume"],
    ["task"], ["task", "show"], ["demo"], ["replay"], ["box"], ["box", "show"], ["command"],
    ["runs"], ["webhooks"], ["webhooks", "sync"], ["webhooks", "list"], ["status"],
]


def boxsync(*args: str, env: dict[str, str] | None = None, timeout: float = 60
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "processors.cli.main", *args], cwd=ROOT,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "boxsync")
def test_every_command_has_help(command: list[str]) -> None:
    result = boxsync(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: " in result.stdout
    assert len(result.stdout.strip().splitlines()) >= 3


def test_a_bad_setting_is_one_line_naming_the_variable() -> None:
    result = boxsync("stack", "status", env={"BOXSYNC_COLLAPSE_INTERVAL_SECONDS": "60"})
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "BOXSYNC_COLLAPSE_INTERVAL_SECONDS" in result.stderr


def test_worker_without_kafka_exits_non_zero_with_one_line() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = boxsync("worker", env={"BOXSYNC_KAFKA_BOOTSTRAP": address}, timeout=60)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("boxsync:")]
    assert lines and f"cannot reach Kafka at {address}" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_status_without_kafka_exits_non_zero_with_one_line() -> None:
    address = f"127.0.0.1:{free_port()}"
    result = boxsync("status", env={"BOXSYNC_KAFKA_BOOTSTRAP": address}, timeout=60)
    assert result.returncode != 0
    assert result.stderr.startswith(f"boxsync: cannot reach Kafka at {address}"), result.stderr
    assert "Traceback" not in result.stderr


def test_a_sasl_protocol_without_credentials_is_one_line() -> None:
    result = boxsync("status", env={"BOXSYNC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "needs BOXSYNC_KAFKA_SASL_MECHANISM" in result.stderr


def test_worker_without_postgres_exits_non_zero_with_one_line() -> None:
    url = f"postgresql://boxsync:secret-password@127.0.0.1:{free_port()}/boxsync"
    result = boxsync("db", "migrate", env={"BOXSYNC_DATABASE_URL": url}, timeout=60)
    assert result.returncode != 0
    assert "cannot reach PostgreSQL at 127.0.0.1:" in result.stderr, result.stderr
    assert "secret-password" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_an_unmigrated_database_is_one_line_saying_what_to_run(tmp_path: Path) -> None:
    """A tenant schema with nothing applied yet: the message names the schema and the fix."""
    migrate = boxsync("db", "migrate")
    assert migrate.returncode == 0, migrate.stderr
    schema = f"empty_{os.getpid()}"
    result = boxsync("task", "show", "jira:x:1", env={"BOXSYNC_DATABASE_SCHEMA": schema})
    assert result.returncode != 0
    assert "run `boxsync db migrate`" in result.stderr and "Traceback" not in result.stderr
    assert schema in result.stderr, result.stderr


def test_a_search_path_in_the_database_url_is_refused_not_ignored() -> None:
    status = boxsync("stack", "status")
    url = next(line.split()[2] for line in status.stdout.splitlines()
               if line.startswith("postgres"))
    if not url.startswith("postgresql://"):
        pytest.skip("the database URL is not shown for an external database")
    joined = f"{url}&options=-csearch_path%3Dother" if "?" in url else \
        f"{url}?options=-csearch_path%3Dother"
    result = boxsync("task", "show", "jira:x:1", env={"BOXSYNC_DATABASE_URL": joined})
    assert result.returncode != 0
    assert "BOXSYNC_DATABASE_SCHEMA" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_publish_to_an_unknown_topic_is_refused() -> None:
    result = boxsync("publish", "--topic", "nope", str(ROOT / "README.md"))
    assert result.returncode != 0
    assert "nope" in result.stderr and "jira.events" in result.stderr


def test_task_show_of_an_unknown_task_is_one_line(tmp_path: Path) -> None:
    assert boxsync("db", "migrate").returncode == 0  # as a user would, first
    result = boxsync("task", "show", "jira:nowhere.example:0")
    assert result.returncode != 0
    assert result.stderr.startswith("boxsync: ") and "no task" in result.stderr
