"""The worker over SASL/SCRAM against the local broker's SASL_PLAINTEXT listener (issue 16):
every client it makes (stage loops, admin clients, the gateway's producer, faust's aiokafka)
takes the security settings; a wrong password is refused with one line."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from pydantic import SecretStr

from processors.errors import UnavailableError
from processors.runtime.preflight import kafka_metadata
from processors.settings import Settings
from processors.stack.services import port_answers
from tests.support import jira_bodies as jb
from tests.support.kafka import WorkerProcess, publish, read_records

pytestmark = pytest.mark.integration
SITE = "sasl.atlassian.net"


@pytest.fixture
def scram_user(settings: Settings) -> Iterator[tuple[str, str]]:
    port = settings.local_sasl_port
    if port is None or not port_answers("127.0.0.1", port):
        pytest.skip(f"the local broker has no SASL_PLAINTEXT listener on {port}: it was started "
                    "before the listener existed; `boxsync stack down && boxsync stack up`")
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    user, password = f"boxsync-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
    for future in admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(user, info, password.encode())]).values():
        future.result()
    yield user, password
    for future in admin.alter_user_scram_credentials(
            [UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)]).values():
        future.result()


def sasl_env(settings: Settings, user: str, password: str) -> dict[str, str]:
    return {"BOXSYNC_KAFKA_BOOTSTRAP": f"127.0.0.1:{settings.local_sasl_port}",
            "BOXSYNC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "BOXSYNC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "BOXSYNC_KAFKA_SASL_USERNAME": user, "BOXSYNC_KAFKA_SASL_PASSWORD": password}


def test_a_wrong_password_is_refused_in_one_line(settings: Settings,
                                                 scram_user: tuple[str, str]) -> None:
    user, _ = scram_user
    wrong = settings.model_copy(update={
        "kafka_bootstrap": f"127.0.0.1:{settings.local_sasl_port}",
        "kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": user, "kafka_sasl_password": SecretStr("not-the-password")})
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="cannot reach Kafka"):
        kafka_metadata(wrong, timeout=5)
    assert time.monotonic() - started < 15


def test_the_worker_runs_over_sasl_scram(settings: Settings, scram_user: tuple[str, str],
                                         start_worker: Callable[..., WorkerProcess]) -> None:
    user, password = scram_user
    start_worker(settings, BOXSYNC_JIRA_SITE=SITE, **sasl_env(settings, user, password))
    now = int(time.time() * 1000)
    publish(settings, "jira.events", [
        jb.updated(now, jb.user("557058:alice", "Alice"),
                   jb.issue(SITE, str(700 + n), f"SA-{n}", summary=f"over SASL {n}"),
                   9000 + n, [jb.item("summary", f"over SASL {n}")]) for n in range(3)])
    updates = read_records(settings, "task.updates", expect=3, timeout=60)
    assert sorted(u.key or b"" for u in updates) == sorted(
        f"jira:{SITE}:{700 + n}".encode() for n in range(3))
