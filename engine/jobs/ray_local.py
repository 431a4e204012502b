"""A Ray cluster on this machine, to try the Ray executor without GPU servers (and for its tests
and benchmark): a head with the Jobs dashboard and no GPU, plus nodes with one fake GPU each.

    python -m engine.jobs.ray_local --gpu-nodes 2     # prints the address; Ctrl-C stops it

Every node stays on 127.0.0.1 (plain `ray start` would move them to the host's interface
address): RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 plus node_ip_address. Ray schedules the fake GPUs
and sets CUDA_VISIBLE_DEVICES; the jobs themselves run on the CPU when there is no CUDA. A dead
node is noticed in about two seconds (health checks every 0.5 s, three misses).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}


@dataclass
class LocalCluster:
    """The cluster: `url` is the dashboard (the executor's PREFILTER_QA_RAY_ADDRESS), `gpu_nodes`
    the GPU nodes by name (gpu-a, gpu-b, ...)."""

    cluster: Any
    url: str
    gpu_nodes: dict[str, Any] = field(default_factory=dict)
    added: int = 0

    def add_gpu_node(self) -> str:
        """One more node with one fake GPU and one CPU; returns its name."""
        self.added += 1
        name = f"gpu-{chr(ord('a') + self.added - 1)}"
        self.gpu_nodes[name] = self.cluster.add_node(num_cpus=1, num_gpus=1, node_ip_address="127.0.0.1",
                                                     node_name=name)
        return name

    def name_of(self, node_id: str) -> str:
        return next(name for name, node in self.gpu_nodes.items() if node.node_id == node_id)

    def shutdown(self) -> None:
        self.cluster.shutdown()


def start_local_cluster(gpu_nodes: int = 2) -> LocalCluster:
    """Start the head and `gpu_nodes` one-GPU nodes (7-15 s); `shutdown()` stops every process."""
    os.environ.update(LOOPBACK_ENV)  # read by every Ray process started from here
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "num_gpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": True,
        "dashboard_host": "127.0.0.1", "dashboard_port": 0, "node_name": "head", "_system_config": HEALTH_CHECKS})
    local = LocalCluster(cluster, "http://" + cluster.webui_url)
    try:
        for _ in range(gpu_nodes):
            local.add_gpu_node()
        cluster.wait_for_nodes()
    except BaseException:
        cluster.shutdown()
        raise
    return local


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.jobs.ray_local", description=__doc__.split("\n")[0])
    parser.add_argument("--gpu-nodes", type=int, default=2, help="nodes with one fake GPU each (default 2)")
    args = parser.parse_args(argv)
    local = start_local_cluster(args.gpu_nodes)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"Ray cluster on 127.0.0.1: a head and {args.gpu_nodes} GPU nodes ({', '.join(local.gpu_nodes)})\n"
          f"  PREFILTER_QA_RAY_ADDRESS={local.url}\n"
          f"  prefilter-qa worker --executor ray --ray-address {local.url}\n"
          "Ctrl-C stops it.", flush=True)
    try:
        stop.wait()
    finally:
        local.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
