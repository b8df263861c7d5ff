"""`boxsync status`: what an operator looks at first (issue 16).

Per stage: its input partitions, the group's committed offsets, lag and records per second
over the last minute (from the workers' /metrics); dead letters of the last hour by reason;
boxes by sync state; the last update emitted; runs queued and running.
"""

from __future__ import annotations

import time

import click
import orjson

from processors.cli.common import CliContext
from processors.runtime.preflight import check_database, kafka_metadata
from processors.settings import Settings
from processors.stack.postgres import resolve_database_url
from processors.status.gather import gather
from processors.status.logic import render, to_document


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--watch", "watch", type=click.FloatRange(min=1), default=None, is_flag=False,
              flag_value=5.0, metavar="[SECONDS]",
              help="Print again every SECONDS (5 without a value) until Ctrl-C.")
@click.option("--worker", "workers", multiple=True, metavar="URL",
              help="A worker's /metrics URL for records per second (repeatable; the workers "
                   "of a stage add up). Default: this host's worker on BOXSYNC_WEB_PORT.")
@click.pass_obj
def status(obj: CliContext, as_json: bool, watch: float | None, workers: tuple[str, ...]) -> None:
    """Show the stages' partitions, committed offsets, lag and throughput, the last hour's
    dead letters, boxes by sync state, the last update emitted and the open runs.

    \b
    Lag is the high watermark minus the committed offset (what a restarted worker would
    re-read or still has to read), per input partition; the collapse's committed offset
    stays at its oldest open window, so its lag includes up to a window of records.
    Records per second is what each stage read over the last minute, summed over the
    workers named.
    """
    settings = obj.settings
    url = resolve_database_url(settings)
    kafka_metadata(settings)
    check_database(url)
    urls = list(workers) or [_local_worker(settings)]
    while True:
        report = gather(settings, url, urls)
        if as_json:
            click.echo(orjson.dumps(to_document(report),
                                    option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z).decode())
        else:
            if watch is not None:
                click.clear()
            for line in render(report):
                click.echo(line)
        if watch is None:
            return
        time.sleep(watch)


def _local_worker(settings: Settings) -> str:
    host = "127.0.0.1" if settings.web_bind in ("0.0.0.0", "::", "") else settings.web_bind
    return f"http://{host}:{settings.web_port}/metrics"
