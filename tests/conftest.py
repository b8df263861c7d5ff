"""Fixtures shared by the tiers that need services: the real local stack (started if it is
not running, never stopped here) and its migrated database."""

from __future__ import annotations

import pytest

from processors.settings import Settings, load_settings
from processors.stack.postgres import resolve_database_url
from processors.stack.services import stack_up
from processors.store import db
from tests.support.kafka import ROOT


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    settings = load_settings()
    if not settings.local_dir.is_absolute():
        settings = settings.model_copy(update={"local_dir": ROOT / settings.local_dir})
    stack_up(settings, echo=lambda _line: None)
    return settings


@pytest.fixture(scope="session")
def database_url(base_settings: Settings) -> str:
    url = resolve_database_url(base_settings)
    db.migrate(url)
    return url
