"""Part `soak`: a steady rate over many tasks for a long time, through a real worker.

Every few seconds it samples the RSS of every process of the worker (the main process and
each stage process), the pipeline's consumer lag, and the worker's emit-delay histogram.
After the warm-up (the first quarter, at least 30 s), each process's RSS must stay within
10 % of what it was when the warm-up ended; the p99 emit delay after the warm-up must be at
most interval + grace + 1 s; and the lag must stay bounded: never more than what the rate
brings in 2 x (interval + grace) + 5 s (the open windows hold the collapse's committed offset
back by about interval + grace), and no higher in the last quarter than in the second.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from chaos.bodies import Generator, live
from chaos.publisher import Publisher
from chaos.report import Report
from chaos.stack import ChaosStack, Metrics, Worker, run_id
from chaos.topics import delete_topics, pipeline_lag

PART = "soak"
SAMPLE_SECONDS = 5.0
INTERVAL_SECONDS = 5
GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class SoakConfig:
    seconds: float
    rate: float
    tasks: int

    @property
    def warmup(self) -> float:
        return max(30.0, self.seconds / 4)


FULL = SoakConfig(1200.0, 2000.0, 100_000)
QUICK = SoakConfig(70.0, 500.0, 5_000)


@dataclass
class Samples:
    at: list[float] = field(default_factory=list)
    rss: list[dict[str, int]] = field(default_factory=list)
    lag: list[int] = field(default_factory=list)
    warm: Metrics | None = None  # /metrics when the warm-up ended


def sample(worker: Worker, settings: object, config: SoakConfig, started: float,
           stop: threading.Event, into: Samples) -> None:
    while not stop.wait(SAMPLE_SECONDS):
        elapsed = time.monotonic() - started
        into.at.append(elapsed)
        into.rss.append({name: rss for name, (rss, _) in worker.memory().items()})
        into.lag.append(pipeline_lag(settings))  # type: ignore[arg-type]
        if into.warm is None and elapsed >= config.warmup:
            try:
                into.warm = worker.metrics()
            except RuntimeError:
                into.warm = None


def run(stack: ChaosStack, report: Report, config: SoakConfig, seed: int) -> None:
    run_tag = run_id()
    settings = stack.prepare(f"chaos{run_tag}-soak.")
    worker = Worker(stack, settings, f"soak-{run_tag}",
                    BOXSYNC_COLLAPSE_INTERVAL_SECONDS=str(INTERVAL_SECONDS),
                    BOXSYNC_GRACE_SECONDS=str(GRACE_SECONDS))
    generator = Generator(run_tag, config.tasks, seed=seed)
    publisher = Publisher(settings)
    samples = Samples()
    stop = threading.Event()
    try:
        worker.start()
        print(f"  soak: {config.rate:,.0f} events/s over {config.tasks:,} tasks for "
              f"{config.seconds:.0f} s (warm-up {config.warmup:.0f} s)", flush=True)
        started = time.monotonic()
        thread = publisher.run(live(generator, config.rate, config.seconds), stop)
        sampler = threading.Thread(target=sample, args=(worker, settings, config, started,
                                                        stop, samples), daemon=True)
        sampler.start()
        thread.join(config.seconds + 120)
        stop.set()
        sampler.join(30)
        final = worker.metrics()
        _verdicts(report, config, publisher, samples, final, worker.alive())
    finally:
        stop.set()
        worker.stop()
        delete_topics(settings)


def _verdicts(report: Report, config: SoakConfig, publisher: Publisher, samples: Samples,
              final: Metrics, alive: bool) -> None:
    report.check(PART, f"published {config.rate:,.0f} events/s over {config.tasks:,} tasks "
                 f"for {config.seconds:.0f} s", f"{int(config.rate * config.seconds):,} acked, "
                 "at most 2 s behind", f"{publisher.acked:,} acked, {publisher.failed} failed, "
                 f"at worst {publisher.late_seconds:.1f} s behind",
                 publisher.failed == 0 and publisher.late_seconds <= 2.0
                 and publisher.acked >= int(config.rate * config.seconds) - 1)
    warm = [n for n, at in enumerate(samples.at) if at >= config.warmup]
    if not warm:
        report.check(PART, "samples after the warm-up", "some", 0, False)
        return
    base = samples.rss[warm[0]]
    worst: dict[str, float] = {}
    for n in warm:
        for name, rss in samples.rss[n].items():
            if base.get(name):
                worst[name] = max(worst.get(name, 0.0), rss / base[name] - 1)
    flat = all(growth <= 0.10 for growth in worst.values())
    report.check(PART, f"RSS of every process after the warm-up ({len(warm)} samples)",
                 "within +10 % of its value at the end of the warm-up",
                 ", ".join(f"{name} {base[name] / 2**20:.0f} MiB {growth * 100:+.1f} %"
                           for name, growth in sorted(worst.items())), flat and bool(worst))
    budget = INTERVAL_SECONDS + GRACE_SECONDS + 1
    within, total = _share_within(samples.warm, final, "boxsync_emit_delay_seconds", budget)
    share = within / total if total else 0.0
    report.check(PART, f"emit delay after the warm-up ({int(total):,} updates; worker "
                 f"histogram, a bucket at {budget:.0f} s)", f"p99 <= {budget:.0f} s (interval "
                 "+ grace + 1 s): >= 99 % within", f"{share * 100:.2f} % within {budget:.0f} s",
                 total > 0 and share >= 0.99)
    lags = [samples.lag[n] for n in warm if samples.lag[n] >= 0]
    bound = int(config.rate * (2 * (INTERVAL_SECONDS + GRACE_SECONDS) + 5))
    quarter = max(1, len(lags) // 3)
    early = sorted(lags[:quarter])[len(lags[:quarter]) // 2] if lags else 0
    late = sorted(lags[-quarter:])[len(lags[-quarter:]) // 2] if lags else 0
    report.check(PART, "consumer lag after the warm-up (ingest + collapse groups)",
                 f"max <= {bound:,}; median of the last third <= 1.5 x the first's + 1 s",
                 f"max {max(lags, default=-1):,}, median first third {early:,}, last {late:,}",
                 bool(lags) and max(lags) <= bound and late <= 1.5 * early + config.rate)
    report.check(PART, "worker alive and stages never restarted", "alive, 0 stage errors",
                 f"{'alive' if alive else 'exited'}, "
                 f"{final.total('boxsync_stage_errors_total'):.0f} stage errors",
                 alive and final.total("boxsync_stage_errors_total") == 0)


def _share_within(before: Metrics | None, after: Metrics, name: str, bound: float
                  ) -> tuple[float, float]:
    """(observations at most `bound`, all observations) of a histogram between two scrapes;
    `bound` must be one of its buckets."""
    def counts(metrics: Metrics | None) -> dict[float, float]:
        if metrics is None:
            return {}
        return {float(labels["le"]): value
                for labels, value in metrics.samples.get(f"{name}_bucket", ())}

    old, new = counts(before), counts(after)
    return (new.get(bound, 0.0) - old.get(bound, 0.0),
            new.get(float("inf"), 0.0) - old.get(float("inf"), 0.0))
