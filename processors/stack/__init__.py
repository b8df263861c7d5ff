"""The local development stack: Kafka and PostgreSQL (`boxsync stack up|down|status`)."""

from processors.stack.postgres import resolve_database_url
from processors.stack.services import (
    ServiceStatus,
    StackError,
    stack_down,
    stack_status,
    stack_up,
)

__all__ = [
    "ServiceStatus",
    "StackError",
    "resolve_database_url",
    "stack_down",
    "stack_status",
    "stack_up",
]
