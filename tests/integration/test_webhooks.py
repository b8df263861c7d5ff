"""`boxsync webhooks sync|list` (issue 18 §2) against the local Jira/Trello server answering in
the documented formats (tests/support/fake_webhooks.py) and the test tenant's PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from processors.cli.commands_webhooks import webhooks
from processors.cli.common import CliContext
from processors.settings import Settings
from processors.sources.limiter import MemoryLimitStore
from processors.store import boxes, db
from processors.sync.sources import build_sources
from processors.upkeep.logic import JIRA_EVENTS
from processors.upkeep.webhooks import WebhookKeeper
from processors.upkeep.worker import SourceUpkeep
from tests.support.fake_sources import FakeSources

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
JIRA_CALLBACK = "https://boxsync.example.com/webhooks/jira"
TRELLO_CALLBACK = "https://boxsync.example.com/webhooks/trello"
BOARD_A, BOARD_B = "5f1a2b3c4d5e6f7a8b9c0d1e", "5f1a2b3c4d5e6f7a8b9c0d2f"


@pytest.fixture
def fake() -> Iterator[FakeSources]:
    with FakeSources(now=NOW.timestamp()) as server:
        yield server


@pytest.fixture
def hooked(settings: Settings, fake: FakeSources) -> Settings:
    return settings.model_copy(update={
        "jira_base_url": fake.url, "jira_email": fake.jira_email,
        "jira_api_token": SecretStr(fake.jira_api_token), "trello_key": fake.trello_key,
        "trello_token": SecretStr(fake.trello_token), "trello_base_url": fake.url,
        "jira_callback_url": JIRA_CALLBACK, "trello_callback_url": TRELLO_CALLBACK})


def define(database_url: str, box_id: str, *, projects: tuple[str, ...] | list[str] = (),
           boards: tuple[str, ...] | list[str] = (), status: str = "in_progress",
           offset: int = 0) -> None:
    value: dict[str, Any] = {
        "box_id": box_id, "name": box_id, "box_type": "program", "scope_type": "own",
        "status": status, "scope": {"jira_projects": list(projects),
                                    "trello_boards": list(boards)}}
    with db.connect(database_url, autocommit=True) as conn:
        boxes.upsert_reference(conn, boxes.BOXES, box_id, value, "test", 0, offset)


def keep(settings: Settings, database_url: str, now: datetime, *, sync: bool = True) -> Any:
    keeper = WebhookKeeper(settings, build_sources(settings, store=MemoryLimitStore()))
    with db.connect(database_url, autocommit=True) as conn:
        return keeper.sync(conn, now) if sync else keeper.survey(conn, now)


def test_sync_registers_what_the_boxes_need_once(
        hooked: Settings, database_url: str, fake: FakeSources) -> None:
    define(database_url, "ops", projects=["OPS", "WEB"], boards=[BOARD_A])
    define(database_url, "sec", projects=["SEC"], boards=[f"trello:{BOARD_B}"])
    define(database_url, "old", projects=["OLD"], status="closed")  # closed: not needed

    first = keep(hooked, database_url, NOW)

    assert first.errors == {}
    [jira_hook] = fake.jira_webhooks.values()
    assert jira_hook["jqlFilter"] == 'project in ("OPS", "SEC", "WEB")'
    assert jira_hook["url"] == JIRA_CALLBACK
    assert set(jira_hook["events"]) == set(JIRA_EVENTS)
    assert {(h["idModel"], h["callbackURL"], h["description"])
            for h in fake.trello_webhooks.values()} == {
        (BOARD_A, TRELLO_CALLBACK, "boxsync"), (BOARD_B, TRELLO_CALLBACK, "boxsync")}
    assert len(first.registered) == 3

    requests_before = len(fake.requests)
    again = keep(hooked, database_url, NOW + timedelta(hours=1))
    assert (again.registered, again.refreshed, again.removed) == ([], [], [])
    assert len(fake.jira_webhooks) == 1 and len(fake.trello_webhooks) == 2
    # The second run only listed (one Jira page, one Trello list).
    assert [r.method for r in fake.requests[requests_before:]] == ["GET", "GET"]


def test_jira_webhooks_are_refreshed_after_25_days_remembered_across_restarts(
        hooked: Settings, database_url: str, fake: FakeSources) -> None:
    define(database_url, "ops", projects=["OPS"])
    keep(hooked, database_url, NOW)

    assert keep(hooked, database_url, NOW + timedelta(days=24)).refreshed == []
    # A new keeper (a restarted worker) knows from PostgreSQL when it last refreshed.
    fake.now = (NOW + timedelta(days=25)).timestamp()
    outcome = keep(hooked, database_url, NOW + timedelta(days=25))
    webhook_id = next(iter(fake.jira_webhooks))
    assert [item.webhook_id for item in outcome.refreshed] == [str(webhook_id)]
    [refresh] = fake.requests_to("/rest/api/3/webhook/refresh")
    assert refresh.method == "PUT" and refresh.body == {"webhookIds": [webhook_id]}
    assert keep(hooked, database_url, NOW + timedelta(days=26)).refreshed == []


def test_a_scope_change_replaces_and_removes_what_no_box_needs(
        hooked: Settings, database_url: str, fake: FakeSources) -> None:
    define(database_url, "ops", projects=["OPS"], boards=[BOARD_A, BOARD_B])
    keep(hooked, database_url, NOW)
    # Someone else's Trello webhook on the same token: never touched.
    fake.trello_webhooks["f" * 24] = {"id": "f" * 24, "description": "another tool",
                                      "idModel": "abc", "callbackURL": "https://x.example",
                                      "active": True}
    define(database_url, "ops", projects=["OPS", "WEB"], boards=[BOARD_A], offset=1)

    outcome = keep(hooked, database_url, NOW + timedelta(hours=1))

    assert [h["jqlFilter"] for h in fake.jira_webhooks.values()] == ['project in ("OPS", "WEB")']
    assert sorted(h["idModel"] for h in fake.trello_webhooks.values()) == [BOARD_A, "abc"]
    assert {item.source for item in outcome.removed} == {"jira", "trello"}
    assert [item.target for item in outcome.registered] == ['project in ("OPS", "WEB")']


def test_a_jira_that_refuses_dynamic_webhooks_is_reported_and_trello_still_kept(
        hooked: Settings, database_url: str, fake: FakeSources) -> None:
    fake.dynamic_webhooks_forbidden = True  # an API token: Connect and OAuth 2.0 apps only
    define(database_url, "ops", projects=["OPS"], boards=[BOARD_A])

    outcome = keep(hooked, database_url, NOW)

    assert "jira" in outcome.errors and "trello" not in outcome.errors
    assert len(fake.trello_webhooks) == 1 and fake.jira_webhooks == {}


def test_the_commands_list_and_sync(hooked: Settings, database_url: str,
                                    fake: FakeSources) -> None:
    define(database_url, "ops", projects=["OPS"], boards=[BOARD_A])
    runner = CliRunner()
    context = CliContext(settings=hooked)

    listed = runner.invoke(webhooks, ["list", "--json"], obj=context,
                           standalone_mode=False)
    assert listed.exception is None, listed.output
    assert {(row["state"], row["source"]) for row in orjson.loads(listed.output)["webhooks"]} == {
        ("missing", "jira"), ("missing", "trello")}

    synced = runner.invoke(webhooks, ["sync"], obj=context, standalone_mode=False)
    assert synced.exception is None, synced.output
    assert synced.output.count("registered:") == 2

    listed = runner.invoke(webhooks, ["list"], obj=context, standalone_mode=False)
    lines = listed.output.splitlines()
    assert lines[0].split()[:3] == ["state", "source", "site"]
    assert sorted(line.split()[0] for line in lines[1:]) == ["ok", "ok"]


def test_the_worker_keeps_them_hourly_when_told_to(
        hooked: Settings, database_url: str, fake: FakeSources) -> None:
    define(database_url, "ops", projects=["OPS"])
    clock = [NOW.timestamp()]
    sources = build_sources(hooked, store=MemoryLimitStore())
    with db.connect(database_url, autocommit=True) as conn:
        SourceUpkeep(hooked, sources, lambda: clock[0]).tick(conn)  # not told to
        assert fake.requests == []
        upkeep = SourceUpkeep(hooked.model_copy(update={"manage_webhooks": True}), sources,
                              lambda: clock[0])
        upkeep.tick(conn)
        assert len(fake.jira_webhooks) == 1
        seen = len(fake.requests)
        clock[0] += 600
        upkeep.tick(conn)  # within the hour: nothing asked
        assert len(fake.requests) == seen
        clock[0] += 3000
        upkeep.tick(conn)
        assert len(fake.requests) == seen + 2  # listed again (Jira, Trello), nothing to do
