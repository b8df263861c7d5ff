"""processors.status.logic: lag, the workers' rates and the report, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime

from processors.status.logic import (
    STAGE_INPUTS,
    LastUpdate,
    PartitionStatus,
    StageStatus,
    StatusReport,
    add_rates,
    partition_lag,
    rates_from_metrics,
    render,
    to_document,
)
from schemas.topics import ALL_TOPICS

AT = datetime(2026, 12, 4, 12, 0, 30, tzinfo=UTC)


def test_lag_counts_from_the_committed_offset_or_the_log_start() -> None:
    assert partition_lag(90, 0, 100) == 10
    assert partition_lag(None, 20, 100) == 80  # nothing committed: all of what is kept
    assert partition_lag(5, 20, 100) == 80  # committed below the log start (retention)
    assert partition_lag(101, 0, 100) == 0


def test_rates_are_summed_per_stage_over_processes_and_workers() -> None:
    page = """# HELP boxsync_stage_records_per_second x
# TYPE boxsync_stage_records_per_second gauge
boxsync_stage_records_per_second{stage="ingest"} 120.5
boxsync_stage_records_per_second{stage="collapse"} 80.0
# TYPE boxsync_open_windows gauge
boxsync_open_windows 3.0
"""
    one = rates_from_metrics(page)
    assert one == {"ingest": 120.5, "collapse": 80.0}
    assert add_rates([one, {"ingest": 9.5}]) == {"ingest": 130.0, "collapse": 80.0}


def test_every_input_is_a_registry_topic() -> None:
    inputs = [spec for specs in STAGE_INPUTS.values() for spec in specs]
    assert set(inputs) <= set(ALL_TOPICS)
    assert len(inputs) == len(set(inputs))  # one stage per topic


def report() -> StatusReport:
    stage = StageStatus("ingest", "boxsync-ingest", [
        PartitionStatus("jira.events", 0, 90, 100, 10),
        PartitionStatus("jira.events", 1, None, 4, 4)], 12.25)
    last = LastUpdate("jira:acme:1", "u-1", "partial", "upsert",
                      datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC), "task.updates", 0, 7)
    return StatusReport(AT, [stage], {"invalid_json": 2}, {"idle": 3}, last,
                        {"pending": 0, "queued": 1, "running": 0},
                        {"http://w:6066/metrics": "ok"})


def test_text_report_shows_each_partition_and_the_totals() -> None:
    text = "\n".join(render(report()))
    assert "ingest   2 partitions" in text
    assert "jira.events[1]" in text and "14" in text and "12.2" in text
    assert "dead letters, last hour: invalid_json 2" in text
    assert "runs: pending 0, queued 1, running 0" in text
    assert "2026-12-04T12:00:00Z (30s ago) upsert jira:acme:1 (partial, u-1)" in text


def test_json_document_carries_the_stage_lag() -> None:
    document = to_document(report())
    assert document["stages"][0]["lag"] == 14
    assert document["stages"][0]["partitions"][1]["committed"] is None
    assert document["last_update"]["update_id"] == "u-1"
