"""The limiter's buckets in PostgreSQL (`source_limits`, migration 0009): a `LimitStore`
shared by every process and worker of the tenant.

Why PostgreSQL: every stage process and every worker of a tenant already shares its
database, so a row per bucket, locked for the few statements of one decision, makes one
bucket of a credential wherever its calls come from, with no new service to run; a decision
costs about a millisecond on the local socket, against a Jira or Trello answer of tens to
hundreds of milliseconds. Times come from the database's clock, which all workers share.

`transact` locks the rows of the keys in key order (no deadlock between two calls sharing
buckets), creating missing ones, then stores what the pure decision returns, in one
transaction. Buckets unused for a day (a per-issue bucket of an issue written once) are
full again by then, and are deleted now and then.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, TypeVar

import psycopg

from processors.sources.limiter import Step
from processors.sources.limits import Bucket
from processors.store import db

T = TypeVar("T")
_PRUNE_EVERY = 10_000  # decisions between two prunes


class PgLimitStore:
    """A `LimitStore` on its own connection to `url` (opened on first use, and again after a
    broken one)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()
        self._since_prune = 0

    def transact(self, keys: Sequence[str], step: Step[T]) -> T:
        with self._lock:
            try:
                return self._transact(sorted(set(keys)), step)
            except psycopg.OperationalError:
                self.close()  # a broken connection: the next call opens another
                raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self._url, autocommit=True)
        return self._conn

    def _transact(self, keys: list[str], step: Step[T]) -> T:
        conn = self._connection()
        with conn.transaction():
            rows = _locked(conn, keys)
            if len(rows) < len(keys):
                conn.execute("INSERT INTO source_limits (bucket) SELECT unnest(%s::text[]) "
                             "ON CONFLICT (bucket) DO NOTHING", (keys,))
                rows = _locked(conn, keys)
            now = float(rows[0][5])
            current = {row[0]: _bucket(row) for row in rows}
            changed, result = step(current, now)
            if changed:
                _store(conn, changed)
        self._since_prune += 1
        if self._since_prune >= _PRUNE_EVERY:
            self._since_prune = 0
            conn.execute("DELETE FROM source_limits WHERE updated_at < now() - interval '1 day' "
                         "AND blocked_until < extract(epoch FROM now())")
        return result


def _locked(conn: psycopg.Connection, keys: list[str]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT bucket, tokens, at, blocked_until, reason, "
        "extract(epoch FROM clock_timestamp()) FROM source_limits "
        "WHERE bucket = ANY(%s) ORDER BY bucket FOR UPDATE", (keys,)).fetchall()


def _bucket(row: tuple[Any, ...]) -> Bucket | None:
    if row[1] is None:
        return None
    return Bucket(float(row[1]), float(row[2]), float(row[3]), row[4])


def _store(conn: psycopg.Connection, changed: dict[str, Bucket]) -> None:
    names = sorted(changed)
    conn.execute(
        "UPDATE source_limits AS s SET tokens = v.tokens, at = v.at, "
        "blocked_until = v.blocked_until, reason = v.reason, updated_at = now() "
        "FROM unnest(%s::text[], %s::float8[], %s::float8[], %s::float8[], %s::text[]) "
        "AS v(bucket, tokens, at, blocked_until, reason) WHERE s.bucket = v.bucket",
        (names, [changed[n].tokens for n in names], [changed[n].at for n in names],
         [changed[n].blocked_until for n in names], [changed[n].reason for n in names]))
