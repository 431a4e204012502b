"""One real local Ray cluster for the session (engine.jobs.ray_local, as `python -m
engine.jobs.ray_local` starts it): a head with the Jobs dashboard and no GPU, and two nodes with
one fake GPU each, all on 127.0.0.1. The jobs run on the CPU (no CUDA here); a dead node is
noticed in about two seconds.

Skipped when Ray is not installed (`pip install -e '.[ray]'`; `make test` installs it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from engine.jobs.ray_local import LOOPBACK_ENV, LocalCluster, start_local_cluster
from tests.conftest import REPO
from tests.faults.harness import Site, wait_for

RAY_ENV = LOOPBACK_ENV


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalCluster]:
    pytest.importorskip("ray.job_submission", reason="Ray is not installed (pip install -e '.[ray]')")
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    local = start_local_cluster(gpu_nodes=2)
    try:
        yield local
    finally:
        local.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def client(local: LocalCluster) -> Any:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(local.url)


def active_ray_jobs(local: LocalCluster) -> list[str]:
    return [j.submission_id for j in client(local).list_jobs()
            if j.submission_id and str(getattr(j.status, "value", j.status)) in ("PENDING", "RUNNING")]


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

