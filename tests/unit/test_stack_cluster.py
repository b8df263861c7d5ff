"""processors.stack.cluster: the layout of `boxsync stack up --brokers N` (no broker started)."""

from __future__ import annotations

from pathlib import Path

from processors.settings import load_settings
from processors.stack.cluster import bootstrap, nodes, replication
from processors.stack.kafka_files import Role, paths_for, write_config


def test_replication_follows_the_cluster_size() -> None:
    assert replication(1) == (1, 1)
    assert replication(2) == (2, 1)
    assert replication(3) == (3, 2)
    assert replication(5) == (3, 2)


def test_each_node_has_its_ports_and_directory(tmp_path: Path) -> None:
    settings = load_settings(kafka_bootstrap="127.0.0.1:19592", kafka_controller_port=19593,
                             local_dir=str(tmp_path), kafka_brokers=3)
    found = list(nodes(settings))
    assert [ns.kafka_port for _, ns, _ in found] == [19592, 19692, 19792]
    assert [ns.kafka_controller_port for _, ns, _ in found] == [19593, 19693, 19793]
    assert {paths_for(ns).root for _, ns, _ in found} == {
        tmp_path / "kafka-3" / f"node-{n}" / "kafka" for n in (1, 2, 3)}
    assert all(ns.local_sasl_port is None for _, ns, _ in found)
    roles = {role for _, _, role in found}
    assert {role.voters for role in roles} == {
        "1@127.0.0.1:19593,2@127.0.0.1:19693,3@127.0.0.1:19793"}
    assert bootstrap(settings) == "127.0.0.1:19592,127.0.0.1:19692,127.0.0.1:19792"


def test_the_config_of_a_node_names_the_quorum_and_replication(tmp_path: Path) -> None:
    settings = load_settings(kafka_bootstrap="127.0.0.1:19592", kafka_controller_port=19593,
                             local_dir=str(tmp_path), kafka_brokers=3)
    [_, (n, ns, role), _] = list(nodes(settings))
    paths = paths_for(ns)
    paths.root.mkdir(parents=True)
    write_config(ns, paths, role)
    config = dict(line.split("=", 1) for line in paths.config.read_text().splitlines()
                  if "=" in line and not line.startswith("#"))
    assert n == 2 and config["node.id"] == "2"
    assert config["listeners"] == "PLAINTEXT://127.0.0.1:19692,CONTROLLER://127.0.0.1:19693"
    assert config["controller.quorum.voters"].count("@") == 3
    assert config["default.replication.factor"] == "3"
    assert config["min.insync.replicas"] == config["transaction.state.log.min.isr"] == "2"


def test_the_single_broker_keeps_its_config(tmp_path: Path) -> None:
    settings = load_settings(kafka_bootstrap="127.0.0.1:9092", kafka_controller_port=9093,
                             local_dir=str(tmp_path))
    paths = paths_for(settings)
    paths.root.mkdir(parents=True)
    write_config(settings, paths, Role())
    text = paths.config.read_text()
    assert "node.id=1\n" in text and "controller.quorum.voters=1@127.0.0.1:9093\n" in text
    assert "min.insync.replicas=1\n" in text
    assert "SASL_PLAINTEXT://127.0.0.1:9094" in text
