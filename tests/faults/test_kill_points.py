"""kill -9 of the child, the worker or both at every point of a training and an evaluation.

A child is held at a failpoint (engine.jobs.failpoints), killed there, and the next worker (or
the same one) recovers. After each kill the invariants of harness.invariant_problems must hold:
no run or evaluation succeeded without its job, no automatic threshold of a failed evaluation,
nothing left queued or running, no row lost, no feature cache, no process left, and a later job
runs to success. Each kill point's outcome goes into the table printed at the end of the session.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.jobs.failpoints import (
    EVAL_SCORED,
    EVAL_SCORING,
    FAILPOINT_DIR_ENV,
    TRAIN_CHECKPOINT_RECORDED,
    TRAIN_CHECKPOINT_WRITTEN,
    TRAIN_EPOCHS,
    TRAIN_FEATURES,
)
from engine.jobs.procs import group_members, pid_alive
from tests.conftest import copy_workspace
from tests.faults import harness
from tests.faults.conftest import postgres_url
from tests.faults.harness import (
    AE_KILLED,
    AE_QUICK,
    DFR_CACHED,
    Site,
    invariant_problems,
    kill9,
    our_processes,
    wait_for,
)

pytestmark = pytest.mark.faults

EVAL_POINTS = (EVAL_SCORING, EVAL_SCORED)
BOTH_POINTS = (TRAIN_FEATURES, TRAIN_CHECKPOINT_RECORDED, EVAL_SCORED)
KILL_TABLE: list[dict[str, str]] = []  # printed by tests/faults/conftest.py

Case = tuple[str, str, str, Callable[[Site], int]]  # job kind, point, victim, submit -> job id


def test_the_harness_arms_the_failpoints_the_engine_reads() -> None:
    assert harness.FAILPOINT_DIR_ENV == FAILPOINT_DIR_ENV


def _run_cases(site: Site, backend: str, cases: list[Case]) -> list[str]:
    """Kill at each case's point; returns every broken invariant (the table gets every outcome).

    Two workers serve the site, as on a line PC with a spare: when the one running the job is
    killed, the other one's reaper finds its job (a replacement is started after the recovery).
    """
    failures: list[str] = []
    workers = [site.start_worker(), site.start_worker()]
    try:
        for kind, point, victim, submit in cases:
            t0 = time.monotonic()
            before = site.counts()
            site.arm(point)
            job_id = submit(site)
            child = site.reached(point)
            if victim in ("worker", "both"):
                claimer = site.rows(f"SELECT worker FROM jobs WHERE id = {job_id}")[0][0]
                (worker,) = [w for w in workers if claimer.endswith(f":{w.pid}")]
                kill9(worker.pid)
                worker.wait(timeout=30)
                workers.remove(worker)
            if victim in ("child", "both"):
                kill9(child)
            job = site.wait_final(job_id)
            site.release(point)  # a child that survived would go on from here: it must not write
            wait_for(lambda c=child: not pid_alive(c) and not group_members(c), 30,
                     f"the processes of job {job_id} to be gone")
            seconds = time.monotonic() - t0
            problems = invariant_problems(site, before, workers={w.pid for w in workers})
            if job["status"] != "failed":
                problems.append(f"job {job_id} ended {job['status']}, not failed")
            run = site.rows(f"SELECT status FROM runs WHERE id = {job['run_id']}")[0][0]
            KILL_TABLE.append({"backend": backend, "job": kind, "point": point, "killed": victim,
                               "job status": job["status"], "run status": run,
                               "outcome": "held" if not problems else "BROKEN: " + "; ".join(problems),
                               "seconds": f"{seconds:.0f}"})
            failures += [f"{kind} {point} kill {victim}: {p}" for p in problems]
            if len(workers) < 2:
                workers.append(site.start_worker())
        job_id, _ = site.train(AE_QUICK, "ae")  # the queue goes on
        assert site.wait_final(job_id)["status"] == "succeeded", site.job(job_id)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=60)
    wait_for(lambda: not our_processes(site.home), 30, "every process of the workspace to end")
    return failures


def _dfr(site: Site) -> int:
    """DFR with its feature cache (tests/faults/test_regressions.py kills it during its epochs too)."""
    return site.train(DFR_CACHED)[0]


def _ae(site: Site) -> int:
    """The autoencoder (a faster child) with a DataLoader worker process: the later points."""
    return site.train(AE_KILLED, "ae")[0]


TRAIN_CASES = ((TRAIN_FEATURES, _dfr), (TRAIN_EPOCHS, _ae), (TRAIN_CHECKPOINT_WRITTEN, _ae),
               (TRAIN_CHECKPOINT_RECORDED, _ae), (EVAL_SCORING, _ae), (EVAL_SCORED, _ae))


@pytest.mark.parametrize("victim", ["child", "worker", "both"])
def test_kill_9_at_every_point_of_a_training_and_an_evaluation(victim: str, trained_workspace, tmp_path: Path) -> None:
    site = Site(copy_workspace(trained_workspace.home, tmp_path / "ws"))
    ae_run = trained_workspace.ae_run
    cases: list[Case] = [("train", point, victim, submit) for point, submit in TRAIN_CASES]
    cases += [("evaluate", point, victim, lambda s: s.evaluate(ae_run)) for point in EVAL_POINTS]
    if victim == "both":  # the reaper's path is the one of "worker": four points suffice
        cases = [c for c in cases if c[1] in BOTH_POINTS]
    failures = _run_cases(site, "sqlite", cases)
    assert not failures, "\n".join(failures)


@pytest.mark.postgres
def test_kill_9_on_postgresql(tmp_path: Path, tiny_demo: Path) -> None:
    url = postgres_url()
    site = Site(tmp_path / "ws", database_url=url)
    site.cli("import", str(tiny_demo), "--name", "tiny")
    cases: list[Case] = [("train", TRAIN_FEATURES, "child", _dfr), ("train", TRAIN_EPOCHS, "worker", _dfr),
                         ("train", TRAIN_CHECKPOINT_RECORDED, "both", _ae),
                         ("train", EVAL_SCORING, "worker", _ae), ("train", EVAL_SCORED, "both", _ae)]
    failures = _run_cases(site, "postgresql", cases)
    assert not failures, "\n".join(failures)
