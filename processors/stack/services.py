"""The local stack as a whole (`boxsync stack up|down|status`) and what its services share.

Each service (Kafka, PostgreSQL) is a background process that outlives the command which
started it, so everything `down` and `status` know comes from files under `local_dir`:
a pid file per service, checked against the live process table so that a stale file or a
recycled pid is never mistaken for our server.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil

from processors.cli.common import BoxsyncError
from processors.settings import Settings

Echo = Callable[[str], object]
State = Literal["running", "stopped", "external"]

# The repository checkout: deploy/local/ holds the pom and the broker's config templates.
REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy" / "local"

STOP_TIMEOUT_SECONDS = 20.0
# Colour codes, e.g. the resets Debian's Maven prints even in batch mode.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# "at kafka.Foo.bar(Foo.scala:12)" and "... 7 more": where an exception happened, not what.
_JAVA_FRAME = re.compile(r"^(at [\w$.<>]+\(.*\)|\.\.\. \d+ more)$")


@dataclass(frozen=True)
class ServiceStatus:
    """One line of `boxsync stack status`: what runs where, and where to look when it does not."""

    name: str
    state: State
    address: str
    pid: int | None
    log_file: Path | None
    detail: str = ""


class StackError(BoxsyncError):
    """A service could not be started or reached; one line naming the service, cause and log."""

    def __init__(
        self,
        service: str,
        cause: str,
        log_file: Path | None = None,
        *,
        headline: str = "did not start",
    ) -> None:
        self.service = service
        self.cause = cause
        self.log_file = log_file
        message = f"{service} {headline}: {cause}"
        if log_file is not None:
            message += f" (log: {display_path(log_file)})"
        super().__init__(message)


def local_root(settings: Settings) -> Path:
    """`settings.local_dir` as an absolute path, so pid files and configs never depend on cwd."""
    return (Path.cwd() / settings.local_dir).resolve()


def display_path(path: Path) -> str:
    """A path relative to the working directory when it is below it: shorter in messages."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_pid(pid_file: Path) -> int | None:
    """The pid on the first line of `pid_file` (PostgreSQL's postmaster.pid has more lines).

    None when the file is missing or does not start with a number.
    """
    try:
        lines = pid_file.read_text().splitlines()
        return int(lines[0].strip()) if lines else None
    except (OSError, ValueError):
        return None


def write_pid(pid_file: Path, pid: int) -> None:
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{pid}\n")


def process_alive(pid: int | None, *markers: str) -> bool:
    """True when `pid` runs, is not a zombie, and its command line holds every marker.

    The markers guard against pid reuse: after a reboot the pid in a stale file may belong
    to an unrelated process, which must be neither reported as our server nor signalled.
    """
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        command_line = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return all(marker in command_line for marker in markers)


def live_pid(pid_file: Path, *markers: str) -> int | None:
    """The pid from `pid_file` if that process is still ours; a stale file is removed."""
    pid = read_pid(pid_file)
    if process_alive(pid, *markers):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def stop_process(
    pid: int, first_signal: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_SECONDS
) -> bool:
    """Ask a process to exit, wait up to `timeout`, then SIGKILL it. True if it exited politely.

    Only the given pid is signalled (never a name or a group), so `down` stops exactly what
    `up` started.
    """
    try:
        proc = psutil.Process(pid)
        proc.send_signal(first_signal)
        proc.wait(timeout=timeout)
        return True
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
            proc.wait(timeout=10)
        return False


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port (cheap check before a client)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_size(path: Path) -> int:
    """Where a log ends now; pass it to `tail` to see only what a new run writes."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def tail(path: Path, lines: int = 5, start: int = 0) -> str:
    """The last meaningful lines of a log after byte `start`, joined with ' | '.

    One line, so a StackError stays one line. Java stack frames are skipped: the exception
    message above them says what went wrong, the frames only where.
    """
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(start, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    text = _ANSI_ESCAPE.sub("", text)
    kept = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not _JAVA_FRAME.match(line.strip())
    ]
    return " | ".join(kept[-lines:])


@contextlib.contextmanager
def stack_lock(settings: Settings) -> Iterator[None]:
    """Serialise `up` and `down` across processes (e.g. two terminals or parallel test runs)."""
    root = local_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    with (root / "stack.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# The service modules import the helpers above, so they are imported here lazily.


def stack_up(settings: Settings, echo: Echo = print) -> list[ServiceStatus]:
    """Start PostgreSQL (unless external) and Kafka; return once both answer."""
    from processors.stack import cluster, kafka, postgres

    start = time.monotonic()
    with stack_lock(settings):
        # The database first: it starts in a second, so a broken setup shows up early.
        database = postgres.up(settings, echo)
        if settings.kafka_brokers > 1:
            brokers = cluster.up(settings, echo)
        else:
            brokers = [kafka.up(settings, echo)]
    echo(f"stack: ready in {time.monotonic() - start:.1f} s")
    return [*brokers, database]


def stack_down(settings: Settings, echo: Echo = print) -> list[ServiceStatus]:
    """Stop what `up` started (Kafka first: it holds no state the database needs)."""
    from processors.stack import cluster, kafka, postgres

    with stack_lock(settings):
        nodes = cluster.down(settings, echo)
        return [kafka.down(settings, echo), *nodes, postgres.down(settings, echo)]


def stack_status(settings: Settings) -> list[ServiceStatus]:
    """Where each service stands, without starting or stopping anything."""
    from processors.stack import cluster, kafka, postgres

    if settings.kafka_brokers > 1:
        return [*cluster.status(settings), postgres.status(settings)]
    return [kafka.status(settings), postgres.status(settings)]
