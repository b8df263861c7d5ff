"""The task sources a runner reads, built from the settings (contract §8)."""

from __future__ import annotations

from processors.metrics import Metrics
from processors.settings import Settings
from processors.sources.jira import JiraSource
from processors.sources.limiter import LimitStore, MemoryLimitStore, jira_limiter, trello_limiter
from processors.sources.trello import TrelloSource
from processors.sync.execute import Sources


def build_sources(settings: Settings, *, store: LimitStore | None = None,
                  metrics: Metrics | None = None) -> Sources:
    """Jira when `BOXSYNC_JIRA_BASE_URL` is set (basic auth with `BOXSYNC_JIRA_EMAIL` and
    `BOXSYNC_JIRA_API_TOKEN` for Cloud, or a bearer `BOXSYNC_JIRA_PAT` for Data Center); Trello
    when `BOXSYNC_TRELLO_KEY` and `BOXSYNC_TRELLO_TOKEN` are. A box whose scope needs a source
    that is not configured fails its run with `source_unavailable`, saying which to set.

    Each source gets its limiter (issue 18) over `store`: pass the PostgreSQL one
    (processors.store.source_limits.PgLimitStore) to share the buckets with every process
    and worker of the tenant; without one, the buckets are this process's own."""
    store = store if store is not None else MemoryLimitStore()
    options = {"fraction": settings.source_burst_fraction,
               "max_wait": settings.source_max_wait_seconds, "metrics": metrics}
    jira = None
    if settings.jira_base_url:
        jira = JiraSource(settings.jira_base_url, email=settings.jira_email,
                          api_token=settings.jira_api_token, pat=settings.jira_pat,
                          field_map=settings.jira_field_map)
        jira.limiter = jira_limiter(jira.site, jira.credential, jira.deployment, store,
                                    settings.limits, **options)
    trello = None
    if settings.trello_key and settings.trello_token is not None:
        trello = TrelloSource(settings.trello_base_url, key=settings.trello_key,
                              token=settings.trello_token)
        trello.limiter = trello_limiter(trello.key, trello.token, store, settings.limits,
                                        **options)
    return Sources(jira, trello)
