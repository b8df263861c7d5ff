"""The nightly incremental sync, queued against the real database: once per night, also when
the check repeats (a restart, a second worker)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest

from processors.settings import Settings
from processors.store import db
from processors.sync.schedule import run_instant
from processors.sync.scheduling import CHECK_SECONDS, NightlySchedule

pytestmark = pytest.mark.integration


def test_a_night_is_queued_once_at_its_hour(settings: Settings, database_url: str) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:8]}"  # the night is recorded per tenant
    settings = settings.model_copy(update={"tenant_id": tenant,
                                           "tenant_timezone": "Europe/Warsaw"})
    night = date(2026, 10, 25)  # the night the clocks go back in Warsaw
    at = run_instant(tenant, "Europe/Warsaw", night).timestamp()
    with db.connect(database_url, autocommit=True) as conn:
        assert NightlySchedule(settings).maybe_queue(conn, at - 60) is None  # not yet
        run = NightlySchedule(settings).maybe_queue(conn, at + 1)
        assert run is not None and run.sync_type == "incremental"
        # A restarted runner (a new schedule object) and a second worker do not run it again.
        again = NightlySchedule(settings)
        assert again.maybe_queue(conn, at + 5) is None
        assert again.maybe_queue(conn, at + 5 + CHECK_SECONDS) is None
        queued = conn.execute("SELECT count(*) FROM sync_runs WHERE run_id = %s",
                              (run.run_id,)).fetchone()
        assert queued == (1,)
        # The next night runs at its own hour.
        next_at = run_instant(tenant, "Europe/Warsaw", night + timedelta(days=1)).timestamp()
        following = NightlySchedule(settings).maybe_queue(conn, next_at + 1)
        assert following is not None and following.run_id != run.run_id
        conn.execute("DELETE FROM sync_runs WHERE run_id = ANY(%s)",
                     ([run.run_id, following.run_id],))
