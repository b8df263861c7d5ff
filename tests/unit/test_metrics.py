"""processors.metrics.observe_all: the same samples as observe() per value."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from processors.metrics import DELAY_BUCKETS, observe_all

VALUES = [0.0, 0.2, 0.5, 0.5000001, 1, 2.9, 3, 7.5, 299.9, 300, 301, 1e9, float("inf"),
          -1.0]


def samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    [family] = list(histogram.collect())
    return {(s.name, s.labels.get("le", "")): s.value for s in family.samples}


def histogram() -> Histogram:
    return Histogram("delay", "d", buckets=DELAY_BUCKETS, registry=CollectorRegistry())


def test_observe_all_matches_observe_value_by_value() -> None:
    one_by_one, all_at_once = histogram(), histogram()
    for value in VALUES:
        one_by_one.observe(value)
    observe_all(all_at_once, VALUES)
    assert samples(all_at_once) == samples(one_by_one)


def test_observe_all_of_nothing_changes_nothing() -> None:
    empty, untouched = histogram(), histogram()
    observe_all(empty, [])
    assert samples(empty) == samples(untouched)
