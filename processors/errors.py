"""The one exception hierarchy. `retriable` says whether trying again later can succeed."""

from __future__ import annotations


class BoxsyncError(Exception):
    """An expected failure, shown as one line (`boxsync: ...`) with a non-zero exit code."""

    retriable = False

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UnavailableError(BoxsyncError):
    """A service (Kafka, PostgreSQL, a REST source) did not answer; it may later."""

    retriable = True


class TopicRecreatedError(BoxsyncError):
    """A topic a stage reads was deleted and created again while the stage ran: its positions
    and what it derived from the old incarnation no longer hold; the stage starts over."""

    retriable = True
