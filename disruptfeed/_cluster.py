"""A local Kafka cluster of several KRaft nodes, each broker and controller, on loopback.

For fault tests and for trying the feed as it runs in production: replication factor 3 and
``min.insync.replicas=2`` for the feed's topics, so one node can die without losing an
acknowledged write. The nodes' ports come from bind(0) on the first start and are kept in
``cluster.json``, so a later ``broker status`` or ``stop`` finds the same cluster.
"""

from __future__ import annotations

__all__ = ["LocalCluster"]

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from disruptfeed._jars import write_atomic
from disruptfeed.broker import BrokerStatus, LocalBroker, _new_cluster_id, free_port

if TYPE_CHECKING:
    from disruptfeed.settings import Settings


class LocalCluster:
    """Start, stop, kill and inspect the nodes of one local cluster.

    Args:
        settings: Project settings (Kafka version, heap, partitions, cache and data dirs).
        nodes: How many nodes; all are voters of the controller quorum.
        data_dir: The cluster's directory; default ``settings.data_dir / "cluster"``.
    """

    def __init__(self, settings: Settings, nodes: int = 3, data_dir: Path | None = None) -> None:
        if nodes < 1:
            raise ValueError("a cluster has at least one node")
        self.data_dir = (data_dir or settings.data_dir / "cluster").expanduser().resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        layout = self.data_dir / "cluster.json"
        ports: list[list[int]]
        if layout.is_file():
            ports = json.loads(layout.read_text(encoding="utf-8"))["ports"]
            if len(ports) != nodes:
                raise ValueError(
                    f"the cluster in {self.data_dir} has {len(ports)} nodes, not {nodes}; "
                    "stop it and remove that directory to make another"
                )
        else:
            ports = [[free_port(), free_port()] for _ in range(nodes)]
            write_atomic(layout, json.dumps({"ports": ports}) + "\n")
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        id_file = self.data_dir / "cluster.id"
        if not id_file.is_file():
            write_atomic(id_file, _new_cluster_id() + "\n")
        cluster_id = id_file.read_text(encoding="utf-8")
        self.brokers = []
        for i, (port, cport) in enumerate(ports):
            node_dir = self.data_dir / f"node-{i + 1}"
            node_dir.mkdir(exist_ok=True)
            if not (node_dir / "cluster.id").is_file():  # every node formats with the same id
                write_atomic(node_dir / "cluster.id", cluster_id)
            self.brokers.append(
                LocalBroker(
                    settings,
                    data_dir=node_dir,
                    port=port,
                    controller_port=cport,
                    node_id=i + 1,
                    voters=voters,
                    nodes=nodes,
                )
            )

    @property
    def bootstrap_servers(self) -> str:
        """Every node's client address, comma-separated."""
        return ",".join(b.bootstrap_servers for b in self.brokers)

    def start(
        self, timeout: float = 120.0, *, progress: Callable[[str], None] | None = None
    ) -> list[BrokerStatus]:
        """Start the nodes that do not run, then wait for every node to answer."""
        self.brokers[0].resolve_jars(progress)
        launched = [(b, b.launch()) for b in self.brokers]
        for broker, pid in launched:
            if pid is not None:
                broker.await_ready(pid, timeout)
        return self.status()

    def start_node(self, node_id: int, timeout: float = 120.0) -> BrokerStatus:
        """Start one node again (after :meth:`kill`) and wait for it to answer."""
        return self.brokers[node_id - 1].start(timeout)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would."""
        self.brokers[node_id - 1].kill()

    def stop(self) -> bool:
        """Stop every node cleanly, all at once; True if any was running.

        One at a time, the last nodes would wait for a controller quorum that is already gone.
        """
        with ThreadPoolExecutor(len(self.brokers)) as pool:
            return any(list(pool.map(lambda b: b.stop(), self.brokers)))

    def status(self) -> list[BrokerStatus]:
        """Each node's status, in node order."""
        return [b.status() for b in self.brokers]
