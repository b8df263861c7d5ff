"""`boxsync stack up --brokers N`: N local Apache Kafka KRaft nodes, each both a controller
and a broker, from the same jars as the single broker (processors.stack.kafka).

Node n listens on the bootstrap port + 100 * (n - 1) and the controller port + 100 * (n - 1)
(127.0.0.1:9092, 9192, 9292 by default) and keeps its files under
`<local_dir>/kafka-<N>/node-<n>/kafka/` (the single broker's layout, its jars linked from
`<local_dir>/kafka/libs`). Topics get replication factor min(N, 3) and, from three nodes,
`min.insync.replicas=2`: one node may be down without losing a write.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
from collections.abc import Iterator

from processors.settings import Settings
from processors.stack import kafka
from processors.stack.kafka_files import HOST, KafkaPaths, Role, paths_for, write_config
from processors.stack.services import Echo, ServiceStatus, live_pid, local_root, write_pid

PORT_STEP = 100
# A node started while its peers and workers keep the cores busy takes longer than a lone
# broker (seen here: 40 s to its controller under a scale-out test on 2 shared cores).
NODE_START_TIMEOUT_SECONDS = 180.0


def replication(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of `brokers` nodes."""
    factor = min(brokers, 3)
    return factor, 2 if factor >= 3 else 1


def node_settings(settings: Settings, node: int) -> Settings:
    """Node `node`'s view of the settings: its ports and its own local directory."""
    step = PORT_STEP * (node - 1)
    root = local_root(settings) / f"kafka-{settings.kafka_brokers}" / f"node-{node}"
    return settings.model_copy(update={
        "kafka_bootstrap": f"{HOST}:{settings.kafka_port + step}",
        "kafka_controller_port": settings.kafka_controller_port + step,
        "kafka_local_sasl_port": 0, "local_dir": root, "kafka_brokers": 1})


def nodes(settings: Settings) -> Iterator[tuple[int, Settings, Role]]:
    count = settings.kafka_brokers
    voters = ",".join(f"{n}@{HOST}:{node_settings(settings, n).kafka_controller_port}"
                      for n in range(1, count + 1))
    factor, min_insync = replication(count)
    for n in range(1, count + 1):
        yield n, node_settings(settings, n), Role(n, voters, factor, min_insync)


def bootstrap(settings: Settings) -> str:
    """Every node's address: a client that bootstraps from all survives any one down."""
    return ",".join(ns.kafka_bootstrap for _, ns, _ in nodes(settings))


def up(settings: Settings, echo: Echo) -> list[ServiceStatus]:
    """Start every node not running yet, all before waiting: a KRaft quorum answers only
    once a majority of its controllers runs."""
    shared = paths_for(settings)
    if not kafka.jars_current(shared):
        kafka.fetch_jars(shared, echo)
    cluster_id = kafka.cluster_id(_cluster_paths(settings))
    started = []
    for n, ns, role in nodes(settings):
        paths = paths_for(ns)
        if live_pid(paths.pid_file, *kafka.markers(paths)) is not None:
            continue
        kafka.refuse_foreign_ports(ns, paths)
        _prepare(paths, shared, cluster_id)
        write_config(ns, paths, role)
        kafka.format_storage(paths, echo)
        echo(f"kafka-{n}: starting on {kafka.address(ns)}")
        pid, mark = kafka.launch(paths)
        write_pid(paths.pid_file, pid)
        started.append((ns, paths, pid, mark))
    for ns, paths, pid, mark in started:
        kafka.wait_until_ready(ns, paths, pid, functools.partial(kafka.exit_reason, pid), mark,
                              NODE_START_TIMEOUT_SECONDS)
    return status(settings)


def down(settings: Settings, echo: Echo) -> list[ServiceStatus]:
    """Stop the nodes of every local cluster found (whatever `--brokers` they started with)."""
    running = []
    for cluster in clusters(settings):
        for n, ns, _ in nodes(cluster):
            pid = live_pid(paths_for(ns).pid_file, *kafka.markers(paths_for(ns)))
            if pid is not None:
                running.append((n, ns, pid))
    # All at once: a node stopped after its peers waits for a quorum that is gone.
    for _, _, pid in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    return [_named(kafka.down(ns, echo), n) for n, ns, _ in running]


def stop_node(settings: Settings, node: int, echo: Echo) -> ServiceStatus:
    """Stop one node (the others keep serving): for tests of a broker going away."""
    return _named(kafka.down(node_settings(settings, node), echo), node)


def status(settings: Settings) -> list[ServiceStatus]:
    return [_named(kafka.status(ns), n) for n, ns, _ in nodes(settings)]


def clusters(settings: Settings) -> list[Settings]:
    """The local clusters that have been started here (a `kafka-<N>` directory), and the
    configured one."""
    found = {settings.kafka_brokers} - {1}
    for path in local_root(settings).glob("kafka-*"):
        suffix = path.name.removeprefix("kafka-")
        if suffix.isdigit() and int(suffix) > 1:
            found.add(int(suffix))
    return [settings.model_copy(update={"kafka_brokers": n}) for n in sorted(found)]


def _cluster_paths(settings: Settings) -> KafkaPaths:
    root = local_root(settings) / f"kafka-{settings.kafka_brokers}"
    root.mkdir(parents=True, exist_ok=True)
    return KafkaPaths(root)


def _prepare(paths: KafkaPaths, shared: KafkaPaths, cluster_id: str) -> None:
    """A node's directory: the shared jars linked in, the cluster's one id."""
    paths.root.mkdir(parents=True, exist_ok=True)
    if not paths.libs.exists():
        os.symlink(shared.libs, paths.libs, target_is_directory=True)
    paths.libs_stamp.write_text(shared.libs_stamp.read_text())
    paths.cluster_id.write_text(cluster_id + "\n")


def _named(service: ServiceStatus, node: int) -> ServiceStatus:
    return dataclasses.replace(service, name=f"kafka-{node}")

