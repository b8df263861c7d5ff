"""The local Apache Kafka broker: one KRaft node (broker + controller) run straight from jars.

There is no Kafka distribution to unpack: Maven fetches the broker's jars (named by
deploy/local/pom.xml) once into `<local_dir>/kafka/libs`, and the broker runs as
`java -cp 'libs/*' kafka.Kafka server.properties`, detached from the command that started it.

Layout under `<local_dir>/kafka/`: libs/ (jars), libs.pom.sha256 (which pom fetched them),
maven.log, cluster.id, server.properties (filled-in template), data/, logs/ (log4j),
kafka.log (the JVM's stdout/stderr) and kafka.pid.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from processors.settings import Settings
from processors.stack.kafka_files import HOST, KafkaPaths, paths_for, write_config
from processors.stack.services import (
    DEPLOY_DIR,
    Echo,
    ServiceStatus,
    StackError,
    display_path,
    live_pid,
    log_size,
    port_answers,
    process_alive,
    stop_process,
    tail,
    write_pid,
)

NAME = "kafka"
POM = DEPLOY_DIR / "pom.xml"
LOG4J_CONFIG = DEPLOY_DIR / "log4j.properties"
MAIN_CLASS = "kafka.Kafka"
# Enough for a development broker; leaves room for the worker and tests on a 2-core machine.
HEAP_OPTIONS = ["-Xms256m", "-Xmx512m"]
START_TIMEOUT_SECONDS = 60.0
MAVEN_TIMEOUT_SECONDS = 900.0


def address(settings: Settings) -> str:
    return f"{HOST}:{settings.kafka_port}"


def markers(paths: KafkaPaths) -> tuple[str, str]:
    """What our broker's command line contains: tells it apart from any other java process."""
    return (MAIN_CLASS, str(paths.config))


# --- status -----------------------------------------------------------------------------


def broker_answers(settings: Settings, timeout: float = 2.0) -> bool:
    """True once the broker serves a metadata request (an open port alone is not enough)."""
    if not port_answers(HOST, settings.kafka_port):
        return False
    # log_level 2 (critical): a refused probe is expected while starting, not worth printing.
    admin = AdminClient({"bootstrap.servers": address(settings), "log_level": 2})
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


def status(settings: Settings) -> ServiceStatus:
    paths = paths_for(settings)
    pid = live_pid(paths.pid_file, *markers(paths))
    if pid is None:
        detail = ""
        if port_answers(HOST, settings.kafka_port):
            detail = f"{address(settings)} answers, but not from a broker this stack started"
        return ServiceStatus(NAME, "stopped", address(settings), None, paths.out_log, detail)
    detail = "" if port_answers(HOST, settings.kafka_port) else "process runs but port is closed"
    return ServiceStatus(NAME, "running", address(settings), pid, paths.out_log, detail)


# --- jars -------------------------------------------------------------------------------


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def jars_current(paths: KafkaPaths) -> bool:
    """The jars are there and were fetched for the pom as it is now."""
    if not any(paths.libs.glob("kafka_2.13-*.jar")):
        return False
    try:
        return paths.libs_stamp.read_text().strip() == _pom_digest()
    except OSError:
        return False


def fetch_jars(paths: KafkaPaths, echo: Echo) -> None:
    """Fetch the jars with Maven into a fresh directory, then swap it in.

    A fresh directory, because a changed pom may change versions and two versions of one
    jar on `libs/*` would make the classpath order decide which one runs.
    """
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(NAME, "Maven (mvn) is not on PATH; it fetches the Kafka jars once")
    staging = paths.root / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
    ]  # fmt: skip
    echo(f"kafka: fetching the broker's jars with Maven (log: {display_path(paths.maven_log)})")
    paths.root.mkdir(parents=True, exist_ok=True)
    with paths.maven_log.open("wb") as log:
        try:
            result = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                timeout=MAVEN_TIMEOUT_SECONDS, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise StackError(
                NAME, f"Maven did not finish in {MAVEN_TIMEOUT_SECONDS:.0f} s", paths.maven_log
            ) from None
    if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        cause = tail(paths.maven_log, 3) or f"exit code {result.returncode}"
        raise StackError(NAME, f"Maven could not fetch the jars: {cause}", paths.maven_log)
    shutil.rmtree(paths.libs, ignore_errors=True)
    staging.rename(paths.libs)
    paths.libs_stamp.write_text(_pom_digest() + "\n")


# --- configuration and storage ---------------------------------------------------------


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 chars).

    Kafka's own tools never hand out an id starting with '-' (it reads like an option),
    so neither do we.
    """
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


def cluster_id(paths: KafkaPaths) -> str:
    """The cluster id, made once and kept: re-formatting with another id would orphan data."""
    if paths.cluster_id.exists():
        return paths.cluster_id.read_text().strip()
    value = _new_cluster_id()
    paths.cluster_id.write_text(value + "\n")
    return value


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError(NAME, "java is not on PATH; the broker needs Java 17 or newer")
    return java


def _jvm_command(paths: KafkaPaths, heap: list[str], main_class: str) -> list[str]:
    return [
        _java(), *heap,
        "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
        # A JVM crash report goes next to the logs, not into whatever directory we ran from.
        f"-XX:ErrorFile={paths.logs}/hs_err_pid%p.log",
        f"-Dlog4j.configuration=file:{LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={paths.logs}",
        "-cp", f"{paths.libs}/*", main_class,
    ]  # fmt: skip


def format_storage(paths: KafkaPaths, echo: Echo) -> None:
    """Format the data directory once; KRaft refuses to start on an unformatted one."""
    if (paths.data / "meta.properties").exists():
        return
    echo("kafka: formatting the data directory (first start)")
    paths.data.mkdir(parents=True, exist_ok=True)
    command = [
        *_jvm_command(paths, ["-Xmx256m"], "kafka.tools.StorageTool"),
        "format", "-t", cluster_id(paths), "-c", str(paths.config),
    ]  # fmt: skip
    offset = log_size(paths.out_log)
    with paths.out_log.open("ab") as log:
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            timeout=120, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        cause = tail(paths.out_log, 3, offset) or f"exit code {result.returncode}"
        raise StackError(NAME, f"formatting storage failed: {cause}", paths.out_log)


# --- start and stop ---------------------------------------------------------------------


def refuse_foreign_ports(settings: Settings, paths: KafkaPaths) -> None:
    """Starting a broker on a taken port would fail after a long JVM start; say so at once."""
    if settings.kafka_port == settings.kafka_controller_port:
        raise StackError(
            NAME,
            f"BOXSYNC_KAFKA_BOOTSTRAP and BOXSYNC_KAFKA_CONTROLLER_PORT both name port "
            f"{settings.kafka_port}; the broker and its controller need one each",
        )
    for port in (settings.kafka_port, settings.kafka_controller_port, settings.local_sasl_port):
        if port is not None and port_answers(HOST, port):
            raise StackError(
                NAME,
                f"{HOST}:{port} already answers, but not from a broker this stack started "
                f"(no live pid in {display_path(paths.pid_file)}); stop that process or set "
                "BOXSYNC_KAFKA_BOOTSTRAP / BOXSYNC_KAFKA_CONTROLLER_PORT / "
                "BOXSYNC_KAFKA_LOCAL_SASL_PORT to free ports",
                paths.out_log,
            )


@dataclass(frozen=True)
class LogMark:
    """Where both broker logs ended when a start began, so an error quotes only this run."""

    out_log: int
    server_log: int

    @classmethod
    def now(cls, paths: KafkaPaths) -> LogMark:
        return cls(log_size(paths.out_log), log_size(paths.logs / "server.log"))


def launch(paths: KafkaPaths) -> tuple[int, LogMark]:
    """Start the broker detached: own session, stdin from /dev/null, output to kafka.log.

    posix_spawn rather than subprocess.Popen: a Popen object expects to be waited for and
    warns (ResourceWarning) when dropped while its process runs, but the broker is meant to
    outlive this process. The pid is all we keep.
    """
    paths.logs.mkdir(parents=True, exist_ok=True)
    with paths.out_log.open("ab") as log:
        log.write(f"\n==== boxsync stack up: {time.strftime('%Y-%m-%d %H:%M:%S')} ====\n".encode())
        log.flush()
        mark = LogMark.now(paths)
        command = [*_jvm_command(paths, HEAP_OPTIONS, MAIN_CLASS), str(paths.config)]
        pid = os.posix_spawn(
            command[0], command, os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log.fileno(), 1),
                (os.POSIX_SPAWN_DUP2, log.fileno(), 2),
            ],
            setsid=True,
        )  # fmt: skip
    return pid, mark


def _startup_cause(paths: KafkaPaths, mark: LogMark, what: str) -> str:
    """`what` plus this run's last log lines: from kafka.log (warnings and JVM errors) if it
    has any, else from logs/server.log (everything)."""
    for log in (paths.out_log, paths.logs / "server.log"):
        offset = mark.out_log if log == paths.out_log else mark.server_log
        lines = tail(log, 5, offset)
        if lines:
            return f"{what}; last lines of {log.relative_to(paths.root)}: {lines}"
    return what


def wait_until_ready(
    settings: Settings,
    paths: KafkaPaths,
    pid: int,
    exited: Callable[[], str | None],
    mark: LogMark,
    timeout: float = START_TIMEOUT_SECONDS,
) -> None:
    """Poll until the broker answers a metadata request; raise if it exits or times out.

    `exited` returns why the process is gone (e.g. its exit code), or None while it runs.
    A broker that does not answer in time is stopped, so a failed `up` leaves nothing behind.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reason = exited()
        if reason is not None:
            paths.pid_file.unlink(missing_ok=True)
            raise StackError(NAME, _startup_cause(paths, mark, reason), paths.out_log)
        if broker_answers(settings):
            return
        time.sleep(0.5)
    stop_process(pid)
    paths.pid_file.unlink(missing_ok=True)
    what = f"no answer on {address(settings)} within {timeout:.0f} s (stopped it)"
    raise StackError(NAME, _startup_cause(paths, mark, what), paths.out_log)


def exit_reason(pid: int) -> str | None:
    """Why our just-spawned child exited (reaping it), or None while it runs."""
    try:
        done, wait_status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return "the broker process exited"
    if done == 0:
        return None
    code = os.waitstatus_to_exitcode(wait_status)
    return f"java was killed by signal {-code}" if code < 0 else f"java exited with code {code}"


def _await_running(settings: Settings, paths: KafkaPaths, pid: int, echo: Echo) -> None:
    """Our broker runs (say, another `up` just started it): wait until it answers."""
    if broker_answers(settings):
        return
    echo(f"kafka: pid {pid} runs but does not answer yet; waiting")
    ours = markers(paths)
    wait_until_ready(
        settings, paths, pid,
        lambda: None if process_alive(pid, *ours) else "the broker process exited",
        LogMark.now(paths),
    )  # fmt: skip


def up(settings: Settings, echo: Echo) -> ServiceStatus:
    """Start the broker unless ours already runs; return once it serves metadata."""
    paths = paths_for(settings)
    pid = live_pid(paths.pid_file, *markers(paths))
    if pid is not None:
        _await_running(settings, paths, pid, echo)
        echo(f"kafka: already running on {address(settings)} (pid {pid})")
        return status(settings)

    refuse_foreign_ports(settings, paths)
    paths.root.mkdir(parents=True, exist_ok=True)
    if not jars_current(paths):
        fetch_jars(paths, echo)
    write_config(settings, paths)
    format_storage(paths, echo)

    started = time.monotonic()
    echo(f"kafka: starting on {address(settings)}")
    pid, mark = launch(paths)
    write_pid(paths.pid_file, pid)
    wait_until_ready(settings, paths, pid, lambda: exit_reason(pid), mark)
    echo(f"kafka: running on {address(settings)} (pid {pid}, "
         f"ready in {time.monotonic() - started:.1f} s)")  # fmt: skip
    return status(settings)


def down(settings: Settings, echo: Echo) -> ServiceStatus:
    """Stop our broker by its pid: SIGTERM (a clean shutdown), SIGKILL after a timeout."""
    paths = paths_for(settings)
    pid = live_pid(paths.pid_file, *markers(paths))
    if pid is None:
        echo("kafka: not running")
    else:
        polite = stop_process(pid, signal.SIGTERM)
        paths.pid_file.unlink(missing_ok=True)
        echo(f"kafka: stopped (pid {pid})" if polite else f"kafka: killed (pid {pid}, no exit)")
    return status(settings)
