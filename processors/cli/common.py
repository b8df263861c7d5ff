"""What every CLI command shares: the context object and the one-line error."""

from __future__ import annotations

from dataclasses import dataclass

from processors.errors import BoxsyncError, UnavailableError
from processors.settings import Settings

__all__ = ["BoxsyncError", "CliContext", "UnavailableError"]


@dataclass(frozen=True)
class CliContext:
    settings: Settings
