"""`boxsync command` (send a SyncCommand, optionally follow it) and `boxsync runs` (list runs).

`command` publishes one `SyncCommand` (contract §4) on `sync.commands`, keyed by its box id
(no key without a box), and returns once Kafka acknowledged it. With `--wait` it reads
`sync.status` (read_committed) from the end offsets taken just before publishing, so no
status older than the command is shown, and follows the command, and the run it queued, to
a final state. `runs` reads PostgreSQL only (`sync_runs`, `command_log`); it writes nothing.
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args

import click
import orjson
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import ClusterMetadata
from pydantic import ValidationError
from tqdm import tqdm

from processors.cli.common import BoxsyncError, UnavailableError
from processors.runtime.kafka import consumer_config, produce, producer_config, topic
from processors.runtime.preflight import kafka_metadata
from processors.settings import Settings
from schemas.commands import CommandType, SyncCommand, SyncStatus
from schemas.events import PersonKind
from schemas.topics import SYNC_COMMANDS, SYNC_STATUS, TopicSpec

COMMAND_TYPES: tuple[str, ...] = get_args(CommandType)
PERSON_KINDS: tuple[str, ...] = get_args(PersonKind)
PERSON_SOURCES: tuple[str, ...] = ("jira", "trello", "app")

# One line per type for `--help`: what it does (contract §4).
COMMAND_HELP: dict[str, str] = {
    "open_box": "a user entered the box: full sync if it waits for one or its cache expired",
    "resync_box": "manual Resynchronize of one box (box admins only; a running sync restarts)",
    "resync_all": "resynchronize every box: always refused (bulk_resync_not_allowed)",
    "plugin_toggled": "flag every own-scope box as waiting for a full sync",
    "plugin_updated": "flag every own-scope box as waiting for a full sync",
    "cache_cleared": "flag every own-scope box as waiting for a full sync",
    "scope_saved": "the box scope changed: full sync in the background",
    "incremental_sync": "sync, box by box, only what differs by last-updated time",
    "jira_index_status": "--param corrupted=true|false: while true, full syncs are refused",
    "clear_box_warnings": "an admin cleared the corrupted-scope warning (box admins only)",
}
# Types about one box: without --box the worker could only refuse them (unknown_box).
BOX_TYPES = frozenset({"open_box", "resync_box", "scope_saved", "clear_box_warnings"})

EXIT_REFUSED, EXIT_FAILED, EXIT_TIMEOUT = 3, 4, 5
FINAL_EXIT: dict[str, int] = {"completed": 0, "refused": EXIT_REFUSED, "failed": EXIT_FAILED}
DELIVERY_TIMEOUT_SECONDS = 10.0
# A flagging command writes all its `flagged` statuses in one transaction, so they become
# visible together; this long without another one means they have all been read.
FLAG_SETTLE_SECONDS = 1.0
_INTEGER = re.compile(r"[+-]?\d+")
# librdkafka logs every failed connection attempt to stderr; the CLI reports failures itself,
# as one line.
_QUIET: dict[str, Any] = {"log_level": 0}


# --- boxsync command -----------------------------------------------------------------------


def parse_value(text: str) -> bool | int | str:
    """A `--param` value: true/false (any case) → bool, an integer → int, else the text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _INTEGER.fullmatch(text.strip()):
        return int(text)
    return text


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` items → params; raises click.BadParameter on a malformed or repeated key."""
    params: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise click.BadParameter(f"takes KEY=VALUE, got {item!r}")
        if name in params:
            raise click.BadParameter(f"{name} given twice")
        params[name] = parse_value(text)
    return params


def _params_option(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]
                   ) -> dict[str, Any]:
    return parse_params(value)


def build_command(command_type: str, box_id: str | None, person: dict[str, Any],
                  params: dict[str, Any], command_id: str | None, now: datetime
                  ) -> SyncCommand:
    """The validated SyncCommand; a problem is one line naming the field (exit 2)."""
    if command_type in BOX_TYPES and not box_id:
        raise BoxsyncError(f"{command_type} is about one box: give --box", exit_code=2)
    try:
        return SyncCommand.model_validate({
            "command_id": uuid.uuid4().hex if command_id is None else command_id,
            "type": command_type, "box_id": box_id, "requested_by": person,
            "requested_at": now, "params": params})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "command"
        raise BoxsyncError(f"invalid command: {field}: {first['msg']}", exit_code=2) from None


def status_line(status: SyncStatus) -> str:
    """One status as a line: state, reason, processed/total, read_only, run and box."""
    total = "?" if status.total is None else str(status.total)
    return (f"{status.state:<9} reason={status.reason or '-'} "
            f"processed={status.processed}/{total} read_only={str(status.read_only).lower()} "
            f"run_id={status.run_id or '-'} box={status.box_id or '-'}"
            + (f"\n          {status.detail}" if status.detail else ""))


@dataclass
class Follower:
    """Which statuses belong to one command, and when it is over.

    A status is the command's when it names the command id, or the run the command queued
    (the runner's statuses may name only the run). The command is over at its first
    completed, failed or refused status, except that a command that queued a run is over
    only when that run completes or fails. `flagged` ends nothing by itself: the caller
    stops once the flags stop coming (`settled`).
    """

    command_id: str
    run_id: str | None = None
    exit_code: int | None = None
    flagged: bool = False
    last: SyncStatus | None = None
    last_at: float = 0.0

    def accept(self, status: SyncStatus, now: float) -> bool:
        """True when `status` is the command's (seen at monotonic time `now`); updates what
        is known of its outcome."""
        if not self._mine(status):
            return False
        self.last, self.last_at = status, now
        if status.state == "queued" and status.run_id and self.run_id is None:
            self.run_id = status.run_id
        elif status.state == "flagged":
            self.flagged = True
        elif status.state in FINAL_EXIT and (self.run_id is None or status.run_id == self.run_id):
            self.exit_code = FINAL_EXIT[status.state]
        return True

    def settled(self, now: float) -> bool:
        """Boxes were flagged and no further status came for FLAG_SETTLE_SECONDS."""
        return self.flagged and now - self.last_at >= FLAG_SETTLE_SECONDS

    def _mine(self, status: SyncStatus) -> bool:
        return status.command_id == self.command_id or (
            self.run_id is not None and status.run_id == self.run_id)


class _Progress:
    """A bar on stderr while waiting (hidden when stderr is no terminal): elapsed time while
    nothing is known, processed/total once the run reports them."""

    _COUNTER = "{desc}{n_fmt}/? [{elapsed}]"
    _BAR = "{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}]"

    def __init__(self, command_id: str) -> None:
        self._bar = tqdm(total=None, desc=f"waiting for {command_id[:12]}: ", leave=False,
                         bar_format=self._COUNTER, disable=not sys.stderr.isatty())

    def show(self, line: str, status: SyncStatus) -> None:
        with self._bar.external_write_mode():
            click.echo(line)
        self._bar.set_description(status.state, refresh=False)
        if status.total is not None:
            self._bar.total, self._bar.bar_format = status.total, self._BAR
        self._bar.n = status.processed
        self._bar.refresh()

    def tick(self) -> None:
        self._bar.refresh()  # keeps the elapsed time moving, as a spinner would

    def close(self) -> None:
        self._bar.close()


_COMMAND_DOC = """Publish one SyncCommand on sync.commands and print its id.

The command is validated before it is sent, keyed by its box id (no key without --box),
and handled once per command id by `boxsync worker`.

\b
Types (contract §4):
{types}

\b
With --wait, read sync.status (from just before publishing) and print each status of the
command, and of the run it queued, until the final one. Exit codes:
  0  completed (or, for plugin_* and cache_cleared, the boxes were flagged)
  3  refused     4  failed     5  no final status within --wait seconds
  1  Kafka unreachable         2  bad input
\b
Examples:
  boxsync command resync_box --box B-1 --user 5b10ac8d --source jira --wait 60
  boxsync command jira_index_status --user ops --user-kind technical --param corrupted=true
  boxsync command open_box --box B-1 --user u1 --param force=true --json
"""


def _command_help() -> str:
    width = max(len(name) for name in COMMAND_TYPES)
    types = "\n".join(f"  {name:<{width}}  {COMMAND_HELP[name]}" for name in COMMAND_TYPES)
    return _COMMAND_DOC.format(types=types)


@click.command("command", help=_command_help())
@click.argument("command_type", metavar="TYPE", type=click.Choice(COMMAND_TYPES))
@click.option("--box", "box_id", default=None,
              help="The box the command is about (the record key). Needed by "
                   + ", ".join(sorted(BOX_TYPES)) + ".")
@click.option("--user", "user_id", required=True,
              help="Who asks: a person id (Jira accountId or key, Trello member id, app user).")
@click.option("--user-kind", type=click.Choice(PERSON_KINDS), default="user", show_default=True,
              help="What kind of person asks.")
@click.option("--user-name", default=None, help="The requester's display name.")
@click.option("--source", type=click.Choice(PERSON_SOURCES), default="app", show_default=True,
              help="Where the requester's id comes from.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", callback=_params_option,
              help="A parameter, repeatable: true/false become booleans, integers numbers, "
                   "anything else text (force=true, corrupted=false).")
@click.option("--id", "command_id", default=None,
              help="The command id (default: a random uuid4 hex); an id is handled once.")
@click.option("--wait", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Follow the command's statuses up to SECONDS.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON lines: the published command, then each status.")
@click.pass_context
def command(ctx: click.Context, command_type: str, box_id: str | None, user_id: str,
            user_kind: str, user_name: str | None, source: str, params: dict[str, Any],
            command_id: str | None, wait: float | None, as_json: bool) -> None:
    """Validate, publish, acknowledge; with --wait, follow (exit codes in the help)."""
    settings: Settings = ctx.obj.settings
    person = {"kind": user_kind, "id": user_id, "name": user_name, "source": source}
    sync_command = build_command(command_type, box_id, person, params, command_id,
                                 datetime.now(UTC))
    metadata = kafka_metadata(settings)
    _require_topic(settings, metadata, SYNC_COMMANDS)
    if wait is None:
        _echo_published(sync_command, _publish(settings, sync_command), as_json)
        return
    _require_topic(settings, metadata, SYNC_STATUS)
    consumer = _status_consumer(settings, metadata)  # positioned before the command exists
    try:
        _echo_published(sync_command, _publish(settings, sync_command), as_json)
        ctx.exit(_follow(consumer, sync_command.command_id, wait, as_json))
    finally:
        consumer.close()


def _require_topic(settings: Settings, metadata: ClusterMetadata, spec: TopicSpec) -> str:
    name = topic(settings, spec)
    if name not in metadata.topics:
        raise BoxsyncError(f"topic {name} does not exist; run `boxsync topics create`")
    return name


def _publish(settings: Settings, sync_command: SyncCommand) -> Message:
    """Send the command and wait for Kafka's acknowledgement; returns the delivered record."""
    config = producer_config(settings, **_QUIET)
    # The record expires with the wait, so a command reported undelivered is not sent later.
    config["message.timeout.ms"] = int(DELIVERY_TIMEOUT_SECONDS * 1000)
    producer = Producer(config)
    reports: list[tuple[KafkaError | None, Message]] = []
    produce(producer, topic(settings, SYNC_COMMANDS), sync_command.model_dump_json().encode(),
            sync_command.box_id, None, lambda err, msg: reports.append((err, msg)))
    producer.flush(DELIVERY_TIMEOUT_SECONDS + 5)
    if not reports or reports[0][0] is not None:
        reason = reports[0][0].str() if reports and reports[0][0] else "no acknowledgement"
        raise UnavailableError(f"command not delivered to Kafka at {settings.kafka_bootstrap} "
                               f"({reason})")
    return reports[0][1]


def _echo_published(sync_command: SyncCommand, record: Message, as_json: bool) -> None:
    where = {"topic": record.topic(), "partition": record.partition(),
             "offset": record.offset(), "key": sync_command.box_id}
    if as_json:
        click.echo(orjson.dumps({"command_id": sync_command.command_id,
                                 "type": sync_command.type, **where}).decode())
        return
    click.echo(sync_command.command_id)
    click.echo(f"published {sync_command.type} to {where['topic']} partition "
               f"{where['partition']} offset {where['offset']}, key {sync_command.box_id or '-'}",
               err=True)


def _status_consumer(settings: Settings, metadata: ClusterMetadata) -> Consumer:
    """A consumer of every sync.status partition, at its end offset as of now."""
    name = topic(settings, SYNC_STATUS)
    # Assigned, never subscribed or committed: the group id only has to be unique.
    consumer = Consumer(consumer_config(settings, f"boxsync-cli-{uuid.uuid4().hex}", **_QUIET))
    ends = []
    for partition in metadata.topics[name].partitions:
        _low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=5)
        ends.append(TopicPartition(name, partition, high))
    consumer.assign(ends)
    return consumer


def _follow(consumer: Consumer, command_id: str, wait: float, as_json: bool) -> int:
    """Print the command's statuses until it is over; returns its exit code."""
    follower, progress = Follower(command_id), _Progress(command_id)
    render: Callable[[SyncStatus], str] = _status_json if as_json else status_line
    deadline = time.monotonic() + wait
    try:
        while (code := _outcome(follower, deadline, wait)) is None:
            status = _decode(consumer.poll(0.2))
            if status is not None and follower.accept(status, time.monotonic()):
                progress.show(render(status), status)
            progress.tick()
        return code
    finally:
        progress.close()


def _outcome(follower: Follower, deadline: float, wait: float) -> int | None:
    """The exit code once the command is over, None while it is not; raises at the deadline."""
    now = time.monotonic()
    if follower.exit_code is not None:
        return follower.exit_code
    if follower.settled(now):
        return 0
    if now >= deadline:
        raise BoxsyncError(_timeout_message(follower, wait), exit_code=EXIT_TIMEOUT)
    return None


def _decode(message: Message | None) -> SyncStatus | None:
    if message is None or message.error() or not message.value():
        return None
    try:
        return SyncStatus.model_validate_json(message.value() or b"")
    except ValidationError:
        return None  # not ours to judge: the worker dead-letters nothing on this topic


def _status_json(status: SyncStatus) -> str:
    return orjson.dumps(status.model_dump(mode="json")).decode()


def _timeout_message(follower: Follower, wait: float) -> str:
    last = follower.last
    if last is None:
        return (f"no status for command {follower.command_id} within {wait:g} s; "
                "is `boxsync worker` running?")
    total = "?" if last.total is None else last.total
    return (f"command {follower.command_id} not over within {wait:g} s (last: {last.state}, "
            f"processed {last.processed}/{total})")
