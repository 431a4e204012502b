"""The child without a local worker, as another executor (e.g. on another host) would start it:
it heartbeats its attempt itself, finishes its job, and stops by itself once the attempt is
superseded — here it is not the leader of its process group, so nobody could kill it by group."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from db import jobs as jq
from engine.jobs.failpoints import TRAIN_EPOCHS
from engine.jobs.lease import EXIT_SUPERSEDED
from tests.conftest import REPO, copy_workspace
from tests.faults.harness import AE_QUICK, Site, wait_for

pytestmark = pytest.mark.faults


def _claim_and_start(site: Site, executor: str) -> tuple[jq.Attempt, subprocess.Popen[str]]:
    with site.sessions().begin() as s:
        job = jq.claim_next_job(s, executor)
        attempt = jq.Attempt(job.id, job.attempt)
    log = open(site.home / f"child-{attempt.job_id}.log", "w")  # noqa: SIM115 - the child keeps it
    child = subprocess.Popen([sys.executable, "-m", "engine.jobs.child", str(attempt.job_id), str(attempt.number)],
                             cwd=REPO, env=site.env(), stdout=log, stderr=subprocess.STDOUT, text=True)
    return attempt, child


def test_a_child_started_by_another_executor_runs_and_stops_itself(trained_workspace, tmp_path: Path) -> None:
    site = Site(copy_workspace(trained_workspace.home, tmp_path / "ws"))
    job_id, run_id = site.train(AE_QUICK, "ae")
    attempt, child = _claim_and_start(site, "ray-node-7:job-abc")
    assert child.wait(timeout=300) == 0
    assert site.job(job_id)["status"] == "succeeded"
    with site.sessions().begin() as s:
        job = jq.get_job(s, job_id)
        assert (job.child_pid, job.attempt) == (child.pid, 1) and job.child_host

    site.arm(TRAIN_EPOCHS)
    job_id, run_id = site.train(AE_QUICK, "ae")
    attempt, child = _claim_and_start(site, "ray-node-7:job-def")
    site.reached(TRAIN_EPOCHS)
    with site.sessions().begin() as s:  # its executor's host was lost: a reaper elsewhere fails the job
        jq.end_job(s, job_id, "failed", "its executor stopped responding", attempt=attempt.number)
    site.release(TRAIN_EPOCHS)
    assert child.wait(timeout=120) == EXIT_SUPERSEDED
    log = (site.home / f"child-{job_id}.log").read_text()
    assert "superseded" in log and "without writing its results" in log
    wait_for(lambda: site.job(job_id)["status"] == "failed", 5)
    assert site.rows(f"SELECT status, checkpoint FROM runs WHERE id = {run_id}")[0] == ("failed", None)
