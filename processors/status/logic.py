"""`boxsync status`, the pure part: which topics each stage reads, lag from committed offsets
and watermarks, the records-per-second figures of the workers' /metrics, and the report as
text or JSON. Nothing here talks to Kafka, PostgreSQL or HTTP (processors.status.gather does).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from schemas.topics import (
    BOX_DEFINITIONS,
    JIRA_EVENTS,
    JIRA_PERMISSIONS,
    OKR_LINKS,
    SYNC_CHANGES,
    SYNC_COMMANDS,
    SYNC_REFERENCE,
    TRELLO_EVENTS,
    TopicSpec,
)

# The Kafka-consuming stages and their input topics (the `sync` stage reads PostgreSQL).
STAGE_INPUTS: dict[str, tuple[TopicSpec, ...]] = {
    "ingest": (JIRA_EVENTS, TRELLO_EVENTS),
    "collapse": (SYNC_CHANGES,),
    "boxes": (BOX_DEFINITIONS, JIRA_PERMISSIONS, OKR_LINKS, SYNC_REFERENCE, SYNC_COMMANDS),
}
RATE_METRIC = "boxsync_stage_records_per_second"


@dataclass(frozen=True)
class PartitionStatus:
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing for it
    high_watermark: int
    lag: int


@dataclass(frozen=True)
class StageStatus:
    stage: str
    group: str
    partitions: list[PartitionStatus]
    records_per_second: float | None  # None: no worker answered

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


@dataclass(frozen=True)
class LastUpdate:
    task_id: str
    update_id: str
    sync_type: str
    op: str
    emitted_at: datetime
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class StatusReport:
    taken_at: datetime
    stages: list[StageStatus]
    dead_letters_last_hour: dict[str, int]
    boxes_by_sync_state: dict[str, int]
    last_update: LastUpdate | None
    runs: dict[str, int]
    workers: dict[str, str] = field(default_factory=dict)  # metrics URL → "ok" or the error


def partition_lag(committed: int | None, low: int, high: int) -> int:
    """Records the group has still to read: from its committed offset (or, with none, from
    the log start, where `auto.offset.reset=earliest` starts it) to the high watermark."""
    start = low if committed is None or committed < 0 else max(committed, low)
    return max(0, high - start)


def rates_from_metrics(text: str) -> dict[str, float]:
    """Stage → records per second, summed over the stage's series in one /metrics page."""
    rates: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != RATE_METRIC:
            continue
        for sample in family.samples:
            stage = sample.labels.get("stage", "")
            rates[stage] = rates.get(stage, 0.0) + sample.value
    return rates


def add_rates(pages: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Workers share a stage's partitions: its rate is the sum over the workers."""
    total: dict[str, float] = {}
    for page in pages:
        for stage, value in page.items():
            total[stage] = total.get(stage, 0.0) + value
    return total


def to_document(report: StatusReport) -> dict[str, Any]:
    """The `--json` document: plain values, times in UTC."""
    document = asdict(report)
    for stage, status in zip(document["stages"], report.stages, strict=True):
        stage["lag"] = status.lag
    return document


def render(report: StatusReport) -> list[str]:
    lines = [f"boxsync status at {_when(report.taken_at)}", "",
             _row(("stage", "partition", "committed", "end", "lag", "records/s (1 min)"))]
    for stage in report.stages:
        rate = "?" if stage.records_per_second is None else f"{stage.records_per_second:.1f}"
        lines.append(_row((stage.stage, f"{len(stage.partitions)} partitions", "", "",
                           str(stage.lag), rate)))
        for p in stage.partitions:
            committed = "-" if p.committed is None else str(p.committed)
            lines.append(_row(("", f"{p.topic}[{p.partition}]", committed,
                               str(p.high_watermark), str(p.lag), "")))
    lines += ["", "dead letters, last hour: " + _counts(report.dead_letters_last_hour),
              "boxes by sync state: " + _counts(report.boxes_by_sync_state),
              "runs: " + _counts(report.runs), "last update emitted: " + _last(report)]
    for url, outcome in report.workers.items():
        if outcome != "ok":
            lines.append(f"worker {url}: {outcome} (records/s unknown)")
    return lines


def _row(cells: tuple[str, ...]) -> str:
    widths = (9, 34, 11, 11, 9, 0)
    return "".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()


def _counts(counts: Mapping[str, int]) -> str:
    shown = [f"{name} {count}" for name, count in sorted(counts.items())]
    return ", ".join(shown) if shown else "none"


def _last(report: StatusReport) -> str:
    last = report.last_update
    if last is None:
        return "none yet"
    age = (report.taken_at - last.emitted_at).total_seconds()
    return (f"{_when(last.emitted_at)} ({age:.0f}s ago) {last.op} {last.task_id} "
            f"({last.sync_type}, {last.update_id})")


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
