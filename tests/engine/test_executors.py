"""Choosing the executor, and what the Ray executor decides before it submits (no cluster needed:
the nodes and jobs below are the plain records the executor reads from Ray)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.jobs.executors import EXECUTOR_ENV, chosen_executor
from tests.conftest import REPO


def test_the_executor_is_local_unless_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EXECUTOR_ENV, raising=False)
    assert chosen_executor() == "local"
    monkeypatch.setenv(EXECUTOR_ENV, "Ray")
    assert chosen_executor() == "ray" and chosen_executor("local") == "local"
    monkeypatch.setenv(EXECUTOR_ENV, "slurm")
    with pytest.raises(UserError, match="PREFILTER_QA_EXECUTOR.*local, ray"):
        chosen_executor()


def test_sqlite_is_refused_when_a_node_is_on_another_host() -> None:
    pytest.importorskip("ray")
    from engine.jobs.ray_cluster import Node
    from engine.jobs.ray_placement import database_problem

    here = Node("a" * 56, "gpu-a", "127.0.0.1", True, 1, 8)
    there = Node("b" * 56, "gpu-b", "192.0.2.7", True, 1, 8)  # TEST-NET: never this host
    dead = Node("c" * 56, "gpu-c", "192.0.2.8", False, 1, 8)
    assert database_problem("sqlite:////ws/prefilter-qa.db", [here, dead]) is None
    problem = database_problem("sqlite:////ws/prefilter-qa.db", [here, there])
    assert problem and "gpu-b (192.0.2.7)" in problem and "PostgreSQL" in problem and "Scale out" in problem
    assert database_problem("postgresql+psycopg://qa@db/prefilter_qa", [here, there]) is None


def test_free_gpus_count_every_active_ray_job_and_our_unlisted_submissions() -> None:
    pytest.importorskip("ray")
    from engine.jobs.ray_cluster import Node, RayJob
    from engine.jobs.ray_placement import free_resources

    nodes = [Node("h", "head", "127.0.0.1", True, 0, 4, is_head=True), Node("a", "gpu-a", "127.0.0.1", True, 2, 8),
             Node("b", "gpu-b", "127.0.0.1", False, 1, 8)]  # a dead node's GPU is no capacity
    jobs = [RayJob("j1", "RUNNING", "a", None, None, None, {"gpus": "1.0", "cpus": "0.0"}),
            RayJob("j2", "SUCCEEDED", "a", None, None, 0, {"gpus": "1.0", "cpus": "0.0"}),
            RayJob("j3", "PENDING", None, None, None, None, {"gpus": "0.0", "cpus": "1.0"}),
            RayJob("other", "RUNNING", "a", None, None, None, {})]  # not ours: Ray does not say what it holds
    assert free_resources(nodes, jobs) == (1.0, 11.0)
    assert free_resources(nodes, jobs, [(1.0, 0.0)]) == (0.0, 11.0)


def test_a_ray_worker_without_a_cluster_says_so_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    env = os.environ | {"PREFILTER_QA_HOME": str(tmp_path / "ws")}
    env.pop("PREFILTER_QA_DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "worker", "--executor", "ray", "--ray-address",
                           "http://127.0.0.1:9"], check=False, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith("prefilter-qa worker: no Ray cluster answers at http://127.0.0.1:9"), proc.stderr


def test_what_a_job_takes_on_the_cluster(home: Path, tiny_demo: Path) -> None:
    """A training takes its run's gpus (1 unless set) where the cluster has GPUs, else one CPU."""
    pytest.importorskip("ray")
    from db import jobs as jq
    from db.auth import system_actor
    from engine.cli.commands import import_folder
    from engine.jobs.queue import submit_train
    from engine.jobs.ray_placement import job_needs
    from engine.services.store import open_workspace

    import_folder(tiny_demo, "tiny")
    _, sessions = open_workspace()
    with sessions.begin() as s:
        ids = [submit_train(s, dataset="tiny", model="ae", overrides=over, actor=system_actor("t"))[0].id
               for over in ({}, {"gpus": "2"}, {"gpus": "0"})]
    with sessions.begin() as s:
        one, two, none = (jq.get_job(s, i) for i in ids)
        assert [job_needs(s, j, True) for j in (one, two, none)] == [(1.0, 0.0), (2.0, 0.0), (0.0, 1.0)]
        assert job_needs(s, two, False) == (0.0, 1.0)  # a cluster without GPUs
