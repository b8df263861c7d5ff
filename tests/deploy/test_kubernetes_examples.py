"""deploy/kubernetes: the Strimzi and CloudNativePG examples agree with the topic registry,
with what the worker reads and writes, and with the chart's production values (issue 16).

Strimzi's Maven artifact io.strimzi:api (0.48.0) ships the model classes, not the CRD YAML
schemas, so these are checked here field by field rather than against the CRDs."""

from __future__ import annotations

from typing import Any

import yaml

from processors.status.logic import STAGE_INPUTS
from schemas.topics import ALL_TOPICS
from tests.deploy.conftest import PRODUCTION, ROOT

EXAMPLES = ROOT / "deploy" / "kubernetes"
# What the worker produces (the gateway, ingest, collapse, boxes, sync).
WRITES = {"jira.events", "trello.events", "sync.changes", "sync.reference", "sync.deadletter",
          "task.updates", "okr.updates", "sync.status"}
# What it consumes: the stages' inputs, and task.updates (the collapse reads the updates it
# emitted since its last commit when it takes a partition).
READS = {spec.name for specs in STAGE_INPUTS.values() for spec in specs} | {"task.updates"}


def load(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((EXAMPLES / name).read_text()) if doc]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    [found] = [d for d in docs if d["kind"] == kind
               and (name is None or d["metadata"]["name"] == name)]
    return found


def test_one_kafkatopic_per_registry_topic_with_its_policy_and_retention() -> None:
    topics = load("kafka-topics.yaml")
    assert {t["kind"] for t in topics} == {"KafkaTopic"}
    found = {t["spec"]["topicName"]: t for t in topics}
    assert list(found) == [spec.name for spec in ALL_TOPICS]
    for spec in ALL_TOPICS:
        topic = found[spec.name]
        config = {key: str(value) for key, value in topic["spec"]["config"].items()}
        assert config.pop("min.insync.replicas") == "2"
        assert config == spec.config(), spec.name
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "boxsync"
    # Every task-keyed topic must have the same count; here every topic has.
    assert {t["spec"]["partitions"] for t in topics} == {12}
    assert {t["spec"]["replicas"] for t in topics} == {3}


def test_the_kafka_cluster_is_kraft_with_node_pools_and_replicated() -> None:
    docs = load("kafka.yaml")
    kafka = one(docs, "Kafka", "boxsync")
    assert kafka["metadata"]["annotations"] == {"strimzi.io/node-pools": "enabled",
                                                "strimzi.io/kraft": "enabled"}
    pool = one(docs, "KafkaNodePool")
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == "boxsync"
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    assert pool["spec"]["replicas"] >= 3
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3 and config["min.insync.replicas"] == 2
    assert config["transaction.state.log.min.isr"] == 2
    [listener] = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True
    assert listener["authentication"]["type"] == "scram-sha-512"
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"


def worker_acls() -> dict[tuple[str, str, str], set[str]]:
    user = one(load("kafka-user.yaml"), "KafkaUser", "boxsync-worker")
    assert user["spec"]["authentication"]["type"] == "scram-sha-512"
    acls: dict[tuple[str, str, str], set[str]] = {}
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        key = (resource["type"], resource["name"], resource["patternType"])
        acls.setdefault(key, set()).update(acl["operations"])
    return acls


def test_the_worker_user_may_do_what_the_worker_does_and_no_more() -> None:
    acls = worker_acls()
    topics = {name: ops for (kind, name, pattern), ops in acls.items() if kind == "topic"}
    assert all(pattern == "literal" for (kind, _, pattern) in acls if kind == "topic")
    assert set(topics) == {spec.name for spec in ALL_TOPICS}
    for name, operations in topics.items():
        expected = {"Describe"} | ({"Read"} if name in READS else set()) | (
            {"Write"} if name in WRITES else set())
        assert operations == expected, name
    assert acls[("group", "boxsync", "prefix")] == {"Read", "Describe"}
    assert acls[("transactionalId", "boxsync-", "prefix")] == {"Write", "Describe"}
    assert not any(kind == "cluster" for (kind, _, _) in acls)
    every = set().union(*acls.values())
    assert not every & {"All", "Create", "Delete", "Alter", "AlterConfigs"}


def test_the_postgres_cluster_makes_the_secrets_the_chart_reads() -> None:
    cluster = one(load("postgres.yaml"), "Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["spec"]["instances"] >= 2
    assert cluster["spec"]["bootstrap"]["initdb"]["database"] == "boxsync"
    values = yaml.safe_load(PRODUCTION.read_text())
    name = cluster["metadata"]["name"]
    assert values["database"]["urlSecret"] == {"name": f"{name}-app", "key": "uri"}
    assert values["database"]["caSecret"] == {"name": f"{name}-ca", "key": "ca.crt"}


def test_the_chart_production_values_name_the_strimzi_resources() -> None:
    values = yaml.safe_load(PRODUCTION.read_text())
    kafka = one(load("kafka.yaml"), "Kafka")["metadata"]["name"]
    user = "boxsync-worker"
    assert values["kafka"]["saslUsername"] == user
    assert values["kafka"]["passwordSecret"] == {"name": user, "key": "password"}
    assert values["kafka"]["caSecret"] == {"name": f"{kafka}-cluster-ca-cert", "key": "ca.crt"}
    assert values["kafka"]["securityProtocol"] == "SASL_SSL"
    assert values["kafka"]["saslMechanism"] == "SCRAM-SHA-512"
    assert values["settings"]["KAFKA_BOOTSTRAP"].startswith(f"{kafka}-kafka-bootstrap.")
    assert values["strimziTopics"]["cluster"] == kafka
    assert int(values["settings"]["PARTITIONS"]) == 12


def test_every_example_is_yaml_kubernetes_reads() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in load(path.name):
            assert {"apiVersion", "kind", "metadata", "spec"} <= set(doc), path.name
            assert doc["metadata"]["name"], path.name
