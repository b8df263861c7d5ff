"""`boxsync worker`: the stream processor, with its web server."""

from __future__ import annotations

import logging

import click

from processors.cli.common import CliContext
from processors.logs import event, logging_config
from processors.metrics import Metrics
from processors.runtime.preflight import check_database, note_incarnations, wait_for_topics
from processors.stack.postgres import resolve_database_url
from processors.store.tenancy import schema_of


@click.command()
@click.pass_obj
def worker(obj: CliContext) -> None:
    """Run the stream processor until stopped (Ctrl-C or SIGTERM).

    \b
    Reads jira.events and trello.events, writes sync.changes, collapses them per task and
    window into task.updates and the PostgreSQL cache. Serves on BOXSYNC_WEB_BIND:
    BOXSYNC_WEB_PORT (default 127.0.0.1:6066):
      /healthz   the process lives
      /readyz    partitions assigned, loops progressing, PostgreSQL answers
      /metrics   Prometheus metrics
      /webhooks/jira, /webhooks/trello   upstream webhooks (signed when a secret is set)
    \b
    Before starting it checks that Kafka answers, the topics exist (`boxsync topics create`),
    and the database answers and is migrated (`boxsync db migrate`); each failure is one line.
    Run several workers (each with its own BOXSYNC_WEB_PORT) to share the partitions.
    """
    import faust  # imported here: faust's import is slow and other commands do not need it

    from processors.app import create_app

    settings = obj.settings
    wait_for_topics(settings)
    database_url = resolve_database_url(settings)
    check_database(database_url)
    log = logging.getLogger("boxsync.worker")
    recreated = note_incarnations(settings, database_url)
    for change in recreated:
        event(log, logging.WARNING, "topic re-created since the last start; the stages read "
              "it from its start and rebuild what they derived from it", **change)
    app = create_app(settings, Metrics.create(), database_url, recreated)
    event(log, logging.INFO, "starting worker",
          kafka=settings.kafka_bootstrap, web=f"{settings.web_bind}:{settings.web_port}",
          topic_prefix=settings.topic_prefix, database_schema=schema_of(database_url),
          interval_seconds=settings.collapse_interval_seconds)
    faust.Worker(app, loglevel=settings.log_level,
                 logging_config=logging_config(settings.log_level, settings.log_format),
                 quiet=settings.log_format == "json",
                 redirect_stdouts=False).execute_from_commandline()
