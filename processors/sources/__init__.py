"""Task sources for full and incremental sync: Jira and Trello over REST (contract §8 settings).

`JiraSource` and `TrelloSource` list the tasks of a box scope as `SourcePage`s of `SourceTask`s
through one retrying `HttpClient`; failures are `SourceAuthFailed` or `SourceUnavailable`.
"""

from __future__ import annotations

from processors.sources.http import HttpClient, RetryPolicy
from processors.sources.jira import JiraSource, build_jql
from processors.sources.model import (
    SourceAuthFailed,
    SourceError,
    SourcePage,
    SourceTask,
    SourceUnavailable,
)
from processors.sources.trello import TrelloSource

__all__ = ["HttpClient", "JiraSource", "RetryPolicy", "SourceAuthFailed", "SourceError",
           "SourcePage", "SourceTask", "SourceUnavailable", "TrelloSource", "build_jql"]
