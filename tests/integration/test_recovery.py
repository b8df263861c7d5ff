"""Recovery of what was not delivered (issue 18 §3), in the worker's upkeep, against the local
Jira (tests/support/fake_sources.py, fake_webhooks.py), the real broker and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
from confluent_kafka import Producer
from pydantic import SecretStr

from processors.ingest.logic import Accepted, IngestConfig, RawRecord, ingest
from processors.runtime.kafka import producer_config
from processors.settings import Settings
from processors.sources.limiter import MemoryLimitStore
from processors.store import boxes, db
from processors.sync.sources import build_sources
from processors.upkeep.worker import SourceUpkeep
from tests.support import jira_bodies as jb
from tests.support.fake_sources import FakeSources, jira_issue
from tests.support.kafka import read_records


@pytest.fixture
def fake() -> Iterator[FakeSources]:
    with FakeSources() as server:
        yield server


@pytest.fixture
def upkept(settings: Settings, fake: FakeSources) -> Settings:
    return settings.model_copy(update={
        "jira_base_url": fake.url, "jira_email": fake.jira_email,
        "jira_api_token": SecretStr(fake.jira_api_token), "manage_webhooks": True,
        "jira_callback_url": "https://gw.example.com/webhooks/jira"})


def failed_delivery(fake: FakeSources, n: int, at_ms: int) -> dict[str, object]:
    body = jb.updated(at_ms, jb.user("557058:ada", "Ada"),
                      jb.issue("acme.atlassian.net", str(10000 + n), f"OPS-{n}",
                               summary=f"lost {n}"), n, [jb.item("summary", f"lost {n}")])
    return {"id": f"delivery-{n}", "body": orjson.dumps(body).decode(),
            "url": "https://gw.example.com/webhooks/jira", "failureTime": at_ms}


def test_failed_deliveries_are_fed_to_ingest_once(
        upkept: Settings, database_url: str, fake: FakeSources) -> None:
    now_ms = int(time.time() * 1000)
    fake.failed_webhooks = [failed_delivery(fake, 1, now_ms - 5000),
                            failed_delivery(fake, 2, now_ms - 4000),
                            {"id": "delivery-3", "url": "u", "failureTime": now_ms - 3000}]
    clock = [time.time()]
    upkeep = SourceUpkeep(upkept, build_sources(upkept, store=MemoryLimitStore()),
                          lambda: clock[0])
    producer = Producer(producer_config(upkept))
    with db.connect(database_url, autocommit=True) as conn:
        upkeep.tick(conn, producer)
        records = read_records(upkept, "jira.events", expect=2, timeout=20, settle=1.0)
        assert sorted(r.headers["x-atlassian-webhook-identifier"] for r in records) == [
            b"delivery-1", b"delivery-2"]  # the third has no body left to feed
        assert {r.headers["x-boxsync-recovered"] for r in records} == {b"jira-failed-webhooks"}
        # Ingest sees them as it saw the original delivery: the same event id, so a task
        # that got the original drops the copy.
        record = records[0]
        change = ingest(RawRecord("jira.events", 0, 0, record.key, record.value,
                                  record.headers), IngestConfig())
        assert isinstance(change, Accepted)
        assert change.change["event_id"] == record.headers[
            "x-atlassian-webhook-identifier"].decode()

        fake.failed_webhooks.append(failed_delivery(fake, 4, now_ms - 1000))
        clock[0] += 601  # the next poll starts after the newest failureTime fed
        upkeep.tick(conn, producer)
        records = read_records(upkept, "jira.events", expect=3, timeout=20, settle=1.0)
        assert len(records) == 3
        polls = fake.requests_to("/rest/api/3/webhook/failed")
        assert any(p.params.get("after") == str(now_ms - 3000) for p in polls)


def test_a_silent_box_of_an_active_site_gets_an_incremental_sync(
        upkept: Settings, database_url: str, fake: FakeSources) -> None:
    settings = upkept.model_copy(update={"silence_resync_minutes": 60,
                                         "manage_webhooks": False})
    fresh = time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(time.time() - 300))
    fake.issues = [jira_issue(1, "OPS-1", updated="2025-01-01T00:00:00.000+0000"),
                   jira_issue(2, "OPS-2", updated=fresh),
                   jira_issue(3, "WEB-1", updated="2025-01-01T00:00:00.000+0000")]
    with db.connect(database_url, autocommit=True) as conn:
        for box_id, project in (("silent", "OPS"), ("quiet", "WEB")):
            boxes.upsert_reference(conn, boxes.BOXES, box_id, {
                "box_id": box_id, "name": box_id, "box_type": "program",
                "scope_type": "own", "status": "in_progress",
                "scope": {"jira_projects": [project]}}, "test", 0, 0)
            conn.execute("""INSERT INTO tasks (task_id, source, project, box_ids, updated_at)
                            VALUES (%s, 'jira', %s, ARRAY[%s], now() - interval '2 hours')""",
                         (f"jira:x:{box_id}", project, box_id))
        clock = [time.time()]
        upkeep = SourceUpkeep(settings, build_sources(settings, store=MemoryLimitStore()),
                              lambda: clock[0])

        queued = upkeep.tick(conn)
        assert [run.box_ids for run in queued] == [["silent"]]  # WEB had nothing newer
        assert queued[0].sync_type == "incremental"
        row = conn.execute("SELECT state, box_ids FROM sync_runs WHERE run_id = %s",
                           (queued[0].run_id,)).fetchone()
        assert row == ("queued", ["silent"])

        clock[0] += 900  # the next check, within the period: not queued again
        assert upkeep.tick(conn) == []
