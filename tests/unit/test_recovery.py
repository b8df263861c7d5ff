"""Recovery decisions (processors.upkeep.recovery): pure, fixed times."""

from __future__ import annotations

import orjson

from processors.upkeep.recovery import Silence, delivery, missed

NOW = 1_800_000_000.0
HOUR = 3600.0


def test_a_silent_box_of_an_active_site_missed_events() -> None:
    assert missed(Silence("b", NOW - 2 * HOUR, NOW - 600, None), NOW, 60)


def test_no_resync_when_heard_recently_or_nothing_newer_or_turned_off() -> None:
    assert not missed(Silence("b", NOW - 1800, NOW - 60, None), NOW, 60)  # heard 30 min ago
    assert not missed(Silence("b", NOW - 2 * HOUR, NOW - 2 * HOUR + 30, None), NOW, 60)
    assert not missed(Silence("b", NOW - 2 * HOUR, None, None), NOW, 60)  # no issues
    assert not missed(Silence("b", NOW - 2 * HOUR, NOW - 600, None), NOW, 0)  # off


def test_at_most_one_resync_per_period() -> None:
    assert not missed(Silence("b", NOW - 2 * HOUR, NOW - 600, NOW - 1800), NOW, 60)
    assert missed(Silence("b", NOW - 2 * HOUR, NOW - 600, NOW - HOUR), NOW, 60)
    assert missed(Silence("b", None, NOW - 600, None), NOW, 60)  # never heard of


def test_a_failed_delivery_becomes_the_record_the_gateway_would_have_written() -> None:
    body = {"webhookEvent": "jira:issue_updated", "issue": {"id": "1", "key": "OPS-1"}}
    raw = delivery({"id": "abc-1", "body": orjson.dumps(body).decode(),
                    "url": "https://gw/webhooks/jira", "failureTime": 1573118132000},
                   "acme.atlassian.net")
    assert raw is not None
    assert raw.key == b"OPS-1" and orjson.loads(raw.value) == body
    assert dict(raw.headers)["x-atlassian-webhook-identifier"] == b"abc-1"
    assert dict(raw.headers)["x-jira-site"] == b"acme.atlassian.net"
    assert raw.failure_time == 1573118132000
    assert delivery({"id": "x", "url": "u", "failureTime": 1}, "s") is None  # no body kept
