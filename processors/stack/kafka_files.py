"""Where the local broker keeps its files (`<local_dir>/kafka/`), and its server.properties,
filled in from deploy/local/server.properties on every start."""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from processors.settings import Settings
from processors.stack.services import DEPLOY_DIR, local_root

HOST = "127.0.0.1"
CONFIG_TEMPLATE = DEPLOY_DIR / "server.properties"
# SCRAM users are added at run time (kafka-configs, or AdminClient.alter_user_scram_credentials);
# KRaft keeps them in the cluster metadata.
SASL_CONFIG = "\n".join([
    "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512",
    *(f"listener.name.sasl_plaintext.scram-sha-{bits}.sasl.jaas.config="
      "org.apache.kafka.common.security.scram.ScramLoginModule required;"
      for bits in (256, 512)),
])


@dataclass(frozen=True)
class KafkaPaths:
    root: Path

    @property
    def libs(self) -> Path:
        return self.root / "libs"

    @property
    def libs_stamp(self) -> Path:
        return self.root / "libs.pom.sha256"

    @property
    def maven_log(self) -> Path:
        return self.root / "maven.log"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def config(self) -> Path:
        return self.root / "server.properties"

    @property
    def cluster_id(self) -> Path:
        return self.root / "cluster.id"

    @property
    def pid_file(self) -> Path:
        return self.root / "kafka.pid"

    @property
    def out_log(self) -> Path:
        return self.root / "kafka.log"


def paths_for(settings: Settings) -> KafkaPaths:
    return KafkaPaths(local_root(settings) / "kafka")


@dataclass(frozen=True)
class Role:
    """A node's place in its cluster: its id, the controller quorum, the replication the
    cluster's size allows (3 brokers: factor 3, 2 in sync; 1 broker: 1 and 1)."""

    node_id: int = 1
    voters: str = ""  # `1@127.0.0.1:9093,...`; empty: this node alone
    replication: int = 1
    min_insync: int = 1


def write_config(settings: Settings, paths: KafkaPaths, role: Role | None = None) -> None:
    """Fill in the template on every start, so changed ports take effect after a restart."""
    template = string.Template(CONFIG_TEMPLATE.read_text())
    role = role or Role()
    sasl_port = settings.local_sasl_port
    text = template.substitute(
        kafka_port=settings.kafka_port,
        controller_port=settings.kafka_controller_port,
        node_id=role.node_id,
        voters=role.voters or f"{role.node_id}@{HOST}:{settings.kafka_controller_port}",
        replication=role.replication,
        min_insync=role.min_insync,
        data_dir=paths.data,
        sasl_listener=f",SASL_PLAINTEXT://{HOST}:{sasl_port}" if sasl_port else "",
        sasl_config=SASL_CONFIG if sasl_port else "",
    )
    paths.config.write_text(text)
