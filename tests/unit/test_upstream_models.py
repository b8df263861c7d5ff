"""The documented upstream models parse the bodies boxsync is tested and demonstrated with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.upstream.jira import WebhookBody
from tests.support import jira_bodies as jb

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "jira"


@pytest.mark.parametrize("path", sorted(p for p in DEMO.glob("*.json") if "broken" not in p.name),
                         ids=lambda p: p.name)
def test_demo_bodies_parse(path: Path) -> None:
    body = WebhookBody.model_validate(json.loads(path.read_text()))
    assert body.issue is not None and body.issue.id
    assert body.timestamp is not None


def test_builder_bodies_parse_with_localized_and_missing_parts() -> None:
    issue = jb.issue("x.atlassian.net", "1", "OPS-1", status="Done")
    body = WebhookBody.model_validate(jb.updated(1, None, issue, 7, [
        {"field": "Статус", "fieldtype": "jira", "from": "1", "to": "2", "toString": "Готово"}]))
    assert body.user is None
    assert body.changelog is not None and body.changelog.items[0].field_id is None
    assert body.issue is not None and body.issue.fields is not None
    status = body.issue.fields.status
    assert status is not None and status.status_category is not None
    assert status.status_category.key == "done"
