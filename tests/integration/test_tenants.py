"""Two tenants on one database and one broker (issue 12 §2): the same box id, the same Jira
site and issue ids, different scopes and permissions. Each tenant's worker and CLI see only
the tenant's own rows (its PostgreSQL schema), and a full sync in one touches nothing of the
other."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from processors.settings import Settings
from processors.stack.postgres import resolve_database_url
from processors.store import db
from processors.store.tenancy import schema_of
from tests.support import jira_bodies as jb
from tests.support.boxes import (
    OLGA,
    box,
    box_show,
    grant,
    issues,
    run_full_sync,
    sync_env,
    wait_until,
)
from tests.support.fake_sources import FakeSources
from tests.support.kafka import WorkerProcess, publish, publish_keyed

pytestmark = pytest.mark.integration

BOX = "program"  # the same box id in both tenants


@pytest.fixture
def fake() -> Iterator[FakeSources]:
    with FakeSources() as server:
        yield server


def rows(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    with db.connect(resolve_database_url(settings), autocommit=True) as conn:
        return conn.execute(sql.encode()).fetchall()


def summaries(settings: Settings) -> dict[str, str]:
    return {task_id: fields.get("summary") for task_id, fields in
            rows(settings, "SELECT task_id, fields FROM tasks")}


def has_summary(settings: Settings, task_id: str, summary: str) -> bool:
    return summaries(settings).get(task_id) == summary




def test_two_tenants_on_one_database_see_only_their_own(
        own_topics: Callable[..., Settings], fake: FakeSources,
        start_worker: Callable[..., WorkerProcess]) -> None:
    a, b = (own_topics(collapse_interval_seconds=2, grace_seconds=0.5, partitions=2,
                       filters_enabled=True) for _ in range(2))
    assert schema_of(resolve_database_url(a)) != schema_of(resolve_database_url(b))
    site = "shared.atlassian.net"  # one Jira site both tenants mirror
    fake.issues = issues(site)
    for tenant, project in ((a, "OPS"), (b, "SEC")):
        publish_keyed(tenant, "box.definitions", [(BOX, box(BOX, [project]))])
        publish_keyed(tenant, "jira.permissions", [grant(project)])
        start_worker(tenant, **sync_env(fake))

    # The same issue changed in both tenants' Jira streams, by the same person.
    olga = jb.user(OLGA["id"], "Olga Owner")
    for tenant, summary, project in ((a, "A's summary", "OPS"), (b, "B's summary", "SEC")):
        number = "1" if project == "OPS" else "10001"
        publish(tenant, "jira.events", [jb.updated(
            int(time.time() * 1000), olga,
            jb.issue(site, number, f"{project}-1", summary=summary), 1,
            [jb.item("summary", summary)])])
    for tenant, task, summary in ((a, f"jira:{site}:1", "A's summary"),
                                  (b, f"jira:{site}:10001", "B's summary")):
        wait_until(functools.partial(has_summary, tenant, task, summary), 30,
                   f"{summary} in its tenant's cache")
    assert summaries(a) == {f"jira:{site}:1": "A's summary"}
    assert summaries(b) == {f"jira:{site}:10001": "B's summary"}

    # Each tenant's CLI shows its own box under the shared id.
    assert box_show(a, BOX)["definition"]["scope"]["jira_projects"] == ["OPS"]
    assert box_show(b, BOX)["definition"]["scope"]["jira_projects"] == ["SEC"]

    # A full sync in A: A's box gets OPS; nothing of B changes.
    b_before = {table: rows(b, f"SELECT * FROM {table} ORDER BY 1") for table in
                ("tasks", "sync_runs", "command_log", "box_state", "reference_records")}
    synced = run_full_sync(a, BOX, "full-in-a")
    assert synced == {f"jira:{site}:{n}" for n in (1, 2, 3)}
    assert {row[0] for row in rows(a, "SELECT task_id FROM tasks")} == synced
    assert rows(a, "SELECT state FROM sync_runs") == [("completed",)]
    for table, before in b_before.items():
        assert rows(b, f"SELECT * FROM {table} ORDER BY 1") == before, table
