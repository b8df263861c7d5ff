"""The one metrics module (contract §9): every boxsync metric, created on an injected registry.

Names follow Prometheus practice: `_total` for counters, base units (seconds), and no label
with a per-task or per-user value. Tests build `Metrics(CollectorRegistry())` to start at zero.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# `_created` samples double every series for no use on a dashboard.
disable_created_metrics()

COLLAPSE_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 50, 100)
# Whole seconds up to 12: the emit-delay target is interval + grace + 1 s (7 s by default, up
# to 12 with a 10 s interval), and a histogram tells a share below a bound only at a bucket.
DELAY_BUCKETS = (0.5, 1, 2, 3, 4, 5, 6, 7, 7.5, 8, 9, 10, 11, 12, 15, 30, 60, 300)
RUN_BUCKETS = (1, 5, 15, 60, 300, 900, 3600)
BATCH_BUCKETS = (0, 1, 10, 100, 500, 1000, 2500, 5000, 10000)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    events_consumed: Counter
    events_dead_lettered: Counter
    events_passed_over: Counter
    events_duplicate: Counter
    events_late: Counter
    task_updates_emitted: Counter
    updates_filtered: Counter
    collapse_ratio: Histogram
    emit_delay: Histogram
    sync_runs: Counter
    sync_run_duration: Histogram
    boxes: Gauge
    commands: Counter
    okr_updates: Counter
    stage_errors: Counter
    stage_batch_records: Histogram
    text_sanitized: Counter
    open_windows: Gauge
    changes_closed: Counter
    webhook_requests: Counter
    source_requests: Counter
    source_throttled_seconds: Counter
    source_points: Counter
    likely_echoes: Counter
    consumer_lag: Gauge
    stage_records_rate: Gauge
    read_only_since: Gauge
    stage_restarts: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        reg = registry if registry is not None else CollectorRegistry()

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"boxsync_{name}", doc, labels, registry=reg)

        return cls(
            registry=reg,
            events_consumed=counter("events_consumed", "Upstream events read, by source and "
                                    "event name", ("source", "event")),
            events_dead_lettered=counter("events_dead_lettered", "Records sent to "
                                         "sync.deadletter, by source and reason",
                                         ("source", "reason")),
            events_passed_over=counter("events_passed_over", "Valid upstream records boxsync "
                                       "does not act on, by source and reason",
                                       ("source", "reason")),
            events_duplicate=counter("events_duplicate", "Deliveries seen before and applied "
                                     "once", ("source",)),
            events_late=counter("events_late", "Changes that arrived after their window "
                                "closed", ("source",)),
            task_updates_emitted=counter("task_updates_emitted", "TaskUpdates published",
                                         ("sync_type", "op")),
            updates_filtered=counter("updates_filtered", "Updates not emitted, by the first "
                                     "reason that stopped them", ("reason",)),
            collapse_ratio=Histogram("boxsync_collapse_ratio", "Change events per update",
                                     buckets=COLLAPSE_BUCKETS, registry=reg),
            emit_delay=Histogram("boxsync_emit_delay_seconds", "From reading a window's last "
                                 "change to emitting its update", buckets=DELAY_BUCKETS,
                                 registry=reg),
            sync_runs=counter("sync_runs", "Full and incremental sync runs, by outcome",
                              ("sync_type", "outcome")),
            sync_run_duration=Histogram("boxsync_sync_run_duration_seconds", "Sync run "
                                        "duration", ("sync_type",), buckets=RUN_BUCKETS,
                                        registry=reg),
            boxes=Gauge("boxsync_boxes", "Boxes by sync state", ("sync_state",), registry=reg),
            commands=counter("commands", "Sync commands handled, by type and outcome",
                             ("type", "outcome")),
            okr_updates=counter("okr_updates", "KeyResultProgress messages published"),
            stage_errors=counter("stage_errors", "Errors that restarted a processing stage "
                                 "(its uncommitted batch is re-read)", ("stage",)),
            stage_batch_records=Histogram(
                "boxsync_stage_batch_records", "Records read per committed batch (one Kafka "
                "transaction) of a hot-path stage; 0: a batch of closed windows or offsets "
                "only", ("stage",), buckets=BATCH_BUCKETS, registry=reg),
            text_sanitized=counter("text_sanitized", "Events whose text was cleaned of NUL, "
                                   "control characters or lone surrogates", ("source",)),
            open_windows=Gauge("boxsync_open_windows", "Collapse windows open in memory",
                               registry=reg),
            changes_closed=counter("changes_closed", "Change events in closed windows, by "
                                   "outcome (emitted in an update, or dropped with it)",
                                   ("outcome",)),
            webhook_requests=counter("webhook_requests", "Webhook requests, by source and "
                                     "outcome", ("source", "outcome")),
            # Issue 18: the client-side limiter of the task sources (processors.sources).
            source_requests=counter("source_requests", "Requests to Jira and Trello, by "
                                    "endpoint class and outcome (ok, throttled: a 429, error, "
                                    "no_answer)", ("source", "endpoint_class", "outcome")),
            source_throttled_seconds=counter(
                "source_throttled_seconds", "Seconds requests waited for the limiter: "
                "client_<limit> for boxsync's own pacing, else the 429's reason",
                ("source", "reason")),
            source_points=counter("source_points", "Jira's rate-limit points spent (1 per "
                                  "request plus 1 per object a read returns); increase over "
                                  "1h is the points per hour", ("source",)),
            likely_echoes=counter("likely_echoes", "Changes authored as an app by boxsync's "
                                  "own integration user: likely echoes of write-backs",
                                  ("source",)),
            consumer_lag=Gauge("boxsync_consumer_lag_records", "Records between a stage's "
                               "read position and its input partition's high watermark",
                               ("stage", "topic", "partition"), registry=reg),
            stage_records_rate=Gauge("boxsync_stage_records_per_second", "Records a stage "
                                     "read and handled per second over the last minute",
                                     ("stage",), registry=reg),
            read_only_since=Gauge("boxsync_read_only_since_timestamp_seconds", "When the "
                                  "full sync this worker runs made its box read-only (Unix "
                                  "time); 0: none running", registry=reg),
            stage_restarts=counter("stage_restarts", "Stage processes the worker started "
                                   "again after they died", ("stage",)),
        )


def observe_all(histogram: Histogram, values: Iterable[float]) -> None:
    """`histogram.observe(v)` for each value, with one lock-taking increment per bucket
    rather than two per value (the collapse observes two histograms per emitted update).

    Uses prometheus_client's Histogram internals (`_upper_bounds`, `_buckets`, `_sum`,
    unchanged since 0.4); without them it falls back to observe()."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    counts = [0] * len(bounds)
    amount = 0.0
    for value in values:
        amount += value
        if value == value:  # observe() puts a NaN in no bucket
            counts[bisect.bisect_left(bounds, value)] += 1  # the first bound >= value
    total.inc(amount)
    for index, count in enumerate(counts):
        if count:
            buckets[index].inc(count)
