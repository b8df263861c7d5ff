"""The task sources a runner reads, built from the settings (contract §8)."""

from __future__ import annotations

from processors.settings import Settings
from processors.sources.jira import JiraSource
from processors.sources.trello import TrelloSource
from processors.sync.execute import Sources


def build_sources(settings: Settings) -> Sources:
    """Jira when `BOXSYNC_JIRA_BASE_URL` is set (basic auth with `BOXSYNC_JIRA_EMAIL` and
    `BOXSYNC_JIRA_API_TOKEN` for Cloud, or a bearer `BOXSYNC_JIRA_PAT` for Data Center); Trello
    when `BOXSYNC_TRELLO_KEY` and `BOXSYNC_TRELLO_TOKEN` are. A box whose scope needs a source
    that is not configured fails its run with `source_unavailable`, saying which to set."""
    jira = None
    if settings.jira_base_url:
        jira = JiraSource(settings.jira_base_url, email=settings.jira_email,
                          api_token=settings.jira_api_token, pat=settings.jira_pat,
                          field_map=settings.jira_field_map)
    trello = None
    if settings.trello_key and settings.trello_token is not None:
        trello = TrelloSource(settings.trello_base_url, key=settings.trello_key,
                              token=settings.trello_token)
    return Sources(jira, trello)
