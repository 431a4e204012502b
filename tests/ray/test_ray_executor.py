"""`prefilter-qa worker --executor ray` against a real local Ray cluster (tests/ray/conftest.py):
GPU-aware placement with the queue in the database, cancel (running and pending), a node that
dies mid-training, a training that raises, and the Jobs page. No mocks: real Ray Jobs, real
worker and child processes, a real SQLite file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.jobs.failpoints import TRAIN_EPOCHS, TRAIN_FEATURES
from tests.conftest import TINY_DFR, TrainedWorkspace, copy_workspace
from tests.faults.harness import AE_QUICK, alive, wait_for
from tests.ray.conftest import (
    RAY_ENV,
    LocalCluster,
    RaySite,
    active_ray_jobs,
    client,
    stop_worker,
    wait_running_on_node,
)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]


@pytest.fixture
def site(trained_workspace: TrainedWorkspace, ray_cluster: LocalCluster, tmp_path: Path) -> RaySite:
    return RaySite(copy_workspace(trained_workspace.home, tmp_path / "ws"), ray_url=ray_cluster.url)


def _release_two(site: RaySite) -> None:
    site.release(TRAIN_FEATURES)
    site.release(TRAIN_EPOCHS)


def test_three_jobs_on_two_gpu_nodes_run_two_at_a_time(site: RaySite, ray_cluster: LocalCluster) -> None:
    jobs = [site.train(TINY_DFR, "dfr")[0] for _ in range(3)]
    site.arm(TRAIN_FEATURES)
    site.arm(TRAIN_EPOCHS)
    worker = site.start_ray_worker()
    try:
        site.reached(TRAIN_FEATURES)
        site.reached(TRAIN_EPOCHS)
        rows = [wait_running_on_node(site, j) for j in jobs[:2]]
        assert {r["node"] for r in rows} == {f"{name} (127.0.0.1)" for name in ray_cluster.gpu_nodes}, rows
        assert [r["gpu"] for r in rows] == ["0", "0"]  # each sees its one GPU as device 0
        assert all(r["executor"] == "ray" and r["external_id"] for r in rows)
        # both GPUs are taken: the third waits in the database, not in Ray
        assert site.job_row(jobs[2])["status"] == "queued"
        assert len(active_ray_jobs(ray_cluster)) == 2
        _release_two(site)
        for j in jobs:
            assert site.wait_final(j, 300)["status"] == "succeeded", site.job_row(j)
    finally:
        stop_worker(worker)
    third = site.job_row(jobs[2])
    assert third["node"] in {f"{name} (127.0.0.1)" for name in ray_cluster.gpu_nodes} and third["attempt"] == 1
    log = Path(third["log_path"]).read_text()
    assert "on a Ray node" in log and "succeeded" in log
    assert site.rows("SELECT count(*) FROM runs WHERE status = 'succeeded' AND checkpoint IS NOT NULL")[0][0] >= 5


def test_the_jobs_page_shows_node_and_gpu(site: RaySite, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id, _ = site.train(AE_QUICK, "ae")
    worker = site.start_ray_worker("--idle-exit", "1")
    try:
        assert site.wait_final(job_id, 300)["status"] == "succeeded"
    finally:
        stop_worker(worker)
    node = site.job_row(job_id)["node"]
    monkeypatch.setenv("PREFILTER_QA_HOME", str(site.home))
    from tests.dashboard.page_helpers import open_page

    at = open_page("jobs")
    table = at.dataframe[0].value
    row = table[table["Job"] == job_id].iloc[0]
    assert (row["Node"], row["GPU"]) == (node, "0")
    assert any(f"node {node}" in c.value for c in at.caption)
    assert any("on a Ray node" in c.value for c in at.code)  # the log, from the workspace
    Path(site.job_row(job_id)["log_path"]).unlink()  # gone from the workspace: Ray's own log instead
    monkeypatch.setenv("PREFILTER_QA_RAY_ADDRESS", site.ray_url)
    at = open_page("jobs")
    assert any("Ray's log of" in c.value for c in at.caption), [c.value for c in at.caption]
    assert any(f"job {job_id} attempt 1 succeeded" in c.value for c in at.code)


def test_probe_names_a_node_that_cannot_see_the_workspace(ray_cluster: LocalCluster, tmp_path: Path) -> None:
    """The check every node runs at worker start, on the real nodes, for a folder they lack."""
    from engine.jobs.ray_cluster import RayCluster
    from engine.jobs.storage import SharedFolder

    cluster = RayCluster(ray_cluster.url)
    nodes = [n for n in cluster.nodes() if n.alive and n.gpus]
    gone = SharedFolder(tmp_path / "not-mounted")
    cmd = "exec " + subprocess.list2cmdline([sys.executable, "-m", "engine.jobs.ray_entry", "probe", "--home",
                                             str(gone.home), "--workspace-id", "abc"])
    results = cluster.run_on_each(nodes, cmd, {}, "test-probe", timeout_s=120)
    for node in nodes:
        result = results[node.node_id]
        assert result is not None and result.status == "FAILED" and result.exit_code == 78
        assert f"the workspace {gone.home} does not exist here" in cluster.logs(result.submission_id)


def _cancel(site: RaySite, job_id: int) -> None:
    from db.auth import system_actor
    from engine.jobs.queue import cancel_job

    with site.sessions().begin() as s:
        cancel_job(s, job_id, system_actor("ray-tests"))


def test_cancel_running_jobs_one_of_them_hung(site: RaySite, ray_cluster: LocalCluster) -> None:
    """A cancelled child stops itself within a heartbeat; one that hangs (SIGSTOP) is stopped
    through Ray after the grace period. Both end cancelled, with their runs."""
    (a, run_a), (b, run_b) = site.train(TINY_DFR, "dfr"), site.train(TINY_DFR, "dfr")
    site.arm(TRAIN_FEATURES)
    site.arm(TRAIN_EPOCHS)
    worker = site.start_ray_worker()
    try:
        pid_first, pid_second = site.reached(TRAIN_FEATURES), site.reached(TRAIN_EPOCHS)
        for j in (a, b):
            wait_running_on_node(site, j)
        (hung,) = site.rows(f"SELECT id FROM jobs WHERE child_pid = {pid_second}")[0]
        os.kill(pid_second, signal.SIGSTOP)  # hung: neither its heartbeat nor its lease can act
        _cancel(site, a)
        _cancel(site, b)
        first = site.wait_final(a, 60)
        second = site.wait_final(b, 90)
    finally:
        stop_worker(worker)
    assert (first["status"], first["error"]) == ("cancelled", "cancelled by user")
    assert (second["status"], second["error"]) == ("cancelled", "cancelled by user")
    wait_for(lambda: not alive(pid_first) and not alive(pid_second), 30, "both children to be gone")
    jobs_api = client(ray_cluster)
    statuses = {j: str(jobs_api.get_job_status(site.job_row(j)["external_id"]).value) for j in (a, b)}
    assert statuses[hung] == "STOPPED", statuses  # the hung one, through Ray; the other stopped itself
    assert statuses[a if hung == b else b] == "FAILED", statuses  # (its exit status 76: cancelled)
    assert site.rows(f"SELECT status, checkpoint FROM runs WHERE id IN ({run_a}, {run_b})") == \
        [("cancelled", None), ("cancelled", None)]
    assert "did not stop within" in site.worker_log()


def test_cancel_a_job_pending_in_ray(site: RaySite, ray_cluster: LocalCluster,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Both GPUs held by another Ray user: the job waits PENDING inside Ray, where `stop_job` may not
    take (ray-project/ray#58353). The cancel ends it at once in the database, and when Ray starts
    it after all, the child refuses to start: no training happens."""
    holder = _hold_gpus(ray_cluster, 2)
    worker = site.start_ray_worker()
    try:
        job_id, run_id = site.train(AE_QUICK, "ae")
        sid = wait_for(lambda: site.job_row(job_id)["external_id"], 60, "the job to be submitted")
        jobs_api = client(ray_cluster)
        assert str(jobs_api.get_job_status(sid).value) == "PENDING"
        _cancel(site, job_id)
        row = site.wait_final(job_id, 30)
        assert (row["status"], row["error"]) == ("cancelled", "cancelled before it started on the cluster")
        holder.stdin.close()  # the GPUs are free again
        holder.wait(timeout=60)
        wait_for(lambda: str(jobs_api.get_job_status(sid).value) in ("STOPPED", "FAILED", "SUCCEEDED"), 120,
                 "Ray to end the job")
    finally:
        if holder.poll() is None:
            holder.kill()
        stop_worker(worker)
    assert str(jobs_api.get_job_status(sid).value) != "SUCCEEDED"
    # Where Ray starts the stopped job after all, it runs exactly this, and the child refuses
    from engine.jobs.ray_cluster import RayCluster
    from engine.jobs.ray_worker import RayWorker
    from engine.services.store import open_workspace

    monkeypatch.delenv("PREFILTER_QA_DATABASE_URL", raising=False)  # the workspace's SQLite, as the worker has it
    ws, sessions = open_workspace(str(site.home))
    log_path = site.job_row(job_id)["log_path"]
    entry = RayWorker(ws, sessions, address=ray_cluster.url).entrypoint("run", str(job_id), "1", "--log", log_path)
    late = RayCluster(ray_cluster.url)
    late.submit(entrypoint=entry, submission_id=f"{sid}-late", env=site.env(), gpus=1, cpus=0, metadata={})
    ended = wait_for(lambda: (j := late.job(f"{sid}-late")) and not j.active and j, 120, "the late start to end")
    assert (ended.status, ended.exit_code) == ("FAILED", 75)
    text = Path(log_path).read_text()
    assert "job is cancelled" in text and "not starting" in text and "epoch" not in text, text
    assert site.rows(f"SELECT status, checkpoint FROM runs WHERE id = {run_id}") == [("cancelled", None)]
    assert site.job_row(job_id)["status"] == "cancelled"


def _hold_gpus(ray_cluster: LocalCluster, n: int) -> subprocess.Popen[str]:
    """Another user's Ray program holding `n` GPUs until its stdin closes."""
    code = ("import ray, sys\n"
            f"ray.init(address={ray_cluster.cluster.address!r}, log_to_driver=False)\n"
            "@ray.remote(num_gpus=1, num_cpus=0)\n"
            "class Hold:\n"
            "    def ready(self): return 1\n"
            f"held = [Hold.remote() for _ in range({n})]\n"
            "ray.get([h.ready.remote() for h in held])\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=os.environ | RAY_ENV)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_training_that_raises_fails_once_and_is_not_retried(site: RaySite) -> None:
    job_id, _ = site.train(["input_size=64", "epochs=1", "batch_size=4", "num_workers=0", "map_size=16",
                            "backbone_weights=/nonexistent/weights.pth"], "dfr")
    worker = site.start_ray_worker("--idle-exit", "2")
    try:
        row = site.wait_final(job_id, 300)
        assert worker.wait(timeout=120) == 0
    finally:
        stop_worker(worker)
    assert row["status"] == "failed" and "/nonexistent/weights.pth" in row["error"], row
    assert "retried" not in row["error"]
    assert site.rows("SELECT count(*) FROM jobs WHERE retry_of IS NOT NULL")[0][0] == 0


def test_a_node_dies_mid_training(site: RaySite, ray_cluster: LocalCluster) -> None:
    """The raylet of the training's node is killed: Ray marks the node dead and the job failed. The
    job fails with the reason and is retried once as a new job on the other node; the first
    attempt can no longer write; the run succeeds once."""
    from db import jobs as jq
    from db.errors import SupersededError

    site.arm(TRAIN_EPOCHS)
    job_id, run_id = site.train(AE_QUICK, "ae")
    worker = site.start_ray_worker()
    try:
        pid = site.reached(TRAIN_EPOCHS)
        name = wait_running_on_node(site, job_id)["node"].split()[0]
        victim = ray_cluster.gpu_nodes.pop(name)
        victim.kill_raylet()
        failed = site.wait_final(job_id, 120)
        retries = wait_for(lambda: site.rows(f"SELECT id FROM jobs WHERE retry_of = {job_id}"), 10, "the retry")
        retry_id = retries[0][0]
        site.release(TRAIN_EPOCHS)  # the first attempt's child, if it still runs, goes on
        retry = site.wait_final(retry_id, 300)
    finally:
        stop_worker(worker)
        ray_cluster.cluster.remove_node(victim, allow_graceful=False)
        ray_cluster.add_gpu_node()  # the session's cluster has two GPU nodes again
    assert failed["status"] == "failed", failed
    assert f"GPU node {name} (127.0.0.1) died while the job ran" in failed["error"]
    assert f"retried once as job {retry_id}" in failed["error"]
    retry_row = site.job_row(retry_id)
    assert retry["status"] == "succeeded" and retry_row["created_by"] == "ray-executor"
    assert retry_row["node"] and not retry_row["node"].startswith(name), retry_row
    assert site.rows(f"SELECT status FROM runs WHERE id = {run_id}") == [("succeeded",)]
    assert site.rows(f"SELECT count(*) FROM jobs WHERE run_id = {run_id} AND kind = 'train' "
                     "AND status = 'succeeded'") == [(1,)]
    with pytest.raises(SupersededError), site.sessions().begin() as s:  # the first attempt writes nothing
        jq.report_progress(s, jq.Attempt(job_id, 1), 0.5, "late")
    wait_for(lambda: not alive(pid), 30, "the first attempt's child to stop")  # killed with its node, or by itself
    assert f"job {job_id} attempt 1 succeeded" not in Path(site.job_row(job_id)["log_path"]).read_text()
    assert len(retries) == 1


@pytest.mark.postgres
def test_a_training_and_an_evaluation_on_postgresql(ray_cluster: LocalCluster, tmp_path: Path,
                                                      tiny_demo: Path) -> None:
    """The database of a cluster across hosts: the nodes' children write to PostgreSQL."""
    from tests.faults.conftest import postgres_url

    site = RaySite(tmp_path / "ws", database_url=postgres_url(), ray_url=ray_cluster.url)
    site.cli("import", str(tiny_demo), "--name", "tiny")
    job_id, run_id = site.train(AE_QUICK, "ae")
    worker = site.start_ray_worker("--idle-exit", "2")
    try:
        assert site.wait_final(job_id, 300)["status"] == "succeeded", site.job_row(job_id)
        evaluation = site.evaluate(run_id)
        assert site.wait_final(evaluation, 300)["status"] == "succeeded", site.job_row(evaluation)
    finally:
        stop_worker(worker)
    for j in (job_id, evaluation):
        row = site.job_row(j)
        assert row["executor"] == "ray" and row["node"] in {f"{n} (127.0.0.1)" for n in ray_cluster.gpu_nodes}
    assert site.rows(f"SELECT count(*) FROM evaluations WHERE run_id = {run_id} AND status = 'succeeded'") == [(2,)]
