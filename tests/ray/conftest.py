"""One real local Ray cluster for the session: a head (the Jobs dashboard, no GPU) and two nodes
with one fake GPU each, all on 127.0.0.1 (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 and
node_ip_address keep Ray on loopback). Fake GPUs: Ray schedules them and sets
CUDA_VISIBLE_DEVICES; the jobs themselves run on the CPU (no CUDA here). Node death is detected
in about two seconds (health checks every 0.5 s, three misses).

Skipped when Ray is not installed (`pip install -e '.[ray]'`; `make test` installs it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import REPO
from tests.faults.harness import Site, wait_for

RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@dataclass
class LocalCluster:
    """The session's cluster: `url` is the dashboard (Jobs API), `gpu_nodes` by name."""

    cluster: Any
    url: str
    gpu_nodes: dict[str, Any] = field(default_factory=dict)
    added: int = 0

    def add_gpu_node(self) -> str:
        self.added += 1
        name = f"gpu-{'abcdefghij'[self.added - 1]}"
        self.gpu_nodes[name] = self.cluster.add_node(num_cpus=1, num_gpus=1, node_ip_address="127.0.0.1",
                                                     node_name=name)
        return name

    def name_of(self, node_id: str) -> str:
        return next(name for name, node in self.gpu_nodes.items() if node.node_id == node_id)

    def client(self) -> Any:
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.url)

    def active_ray_jobs(self) -> list[str]:
        return [j.submission_id for j in self.client().list_jobs()
                if j.submission_id and str(getattr(j.status, "value", j.status)) in ("PENDING", "RUNNING")]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalCluster]:
    pytest.importorskip("ray.job_submission", reason="Ray is not installed (pip install -e '.[ray]')")
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "num_gpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": True,
        "dashboard_host": "127.0.0.1", "dashboard_port": 0, "node_name": "head",
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}})
    local = LocalCluster(cluster, "http://" + cluster.webui_url)
    try:
        local.add_gpu_node()
        local.add_gpu_node()
        cluster.wait_for_nodes()
        yield local
    finally:
        cluster.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class RaySite(Site):
    """A workspace served by `prefilter-qa worker --executor ray` on the session's cluster."""

    ray_url: str = ""

    def env(self) -> dict[str, str]:
        return super().env() | RAY_ENV | {"PREFILTER_QA_EXECUTOR": "ray", "PREFILTER_QA_RAY_ADDRESS": self.ray_url}

    def start_ray_worker(self, *extra: str) -> subprocess.Popen[str]:
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        log = open(self.home / "logs" / "ray-worker.log", "a")  # noqa: SIM115 - the worker keeps it
        return subprocess.Popen([sys.executable, "-m", "engine.cli", "worker", "--executor", "ray", *extra],
                                cwd=REPO, env=self.env(), stdout=log, stderr=subprocess.STDOUT, text=True)

    def worker_log(self) -> str:
        return (self.home / "logs" / "ray-worker.log").read_text(errors="replace")

    def job_row(self, job_id: int) -> dict[str, Any]:
        cols = ("status", "error", "run_id", "attempt", "executor", "external_id", "node", "gpu", "retry_of",
                "created_by", "log_path")
        (row,) = self.rows(f"SELECT {', '.join(cols)} FROM jobs WHERE id = {job_id}")
        return dict(zip(cols, row))


def stop_worker(proc: subprocess.Popen[str], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_running_on_node(site: RaySite, job_id: int, timeout: float = 120) -> dict[str, Any]:
    """The job's row once the worker recorded its node."""
    return wait_for(lambda: (r := site.job_row(job_id))["node"] and r, timeout, f"job {job_id} to get a node")

