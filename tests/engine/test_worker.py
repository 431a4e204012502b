"""The job worker for real: child processes, kill -9, cancel, dead workers, train --wait."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from db import connect
from db import jobs as jq
from db.auth import system_actor
from db.models import utcnow
from engine.workspace import FEATURE_CACHE_NAME
from tests.conftest import REPO, TINY_AE, TINY_DFR, cli, wait_for

LONG_AE = ["input_size=64", "epochs=400", "batch_size=2", "num_workers=0"]
# DFR with its feature cache on and enough epochs to be killed while training.
LONG_DFR = [s for s in TINY_DFR if not s.startswith(("feature_cache_gb", "epochs"))] + [
    "feature_cache_gb=1", "epochs=2000"]


def _train_args(sets: list[str], model: str = "ae") -> list[str]:
    args = ["train", "--dataset", "tiny", "--model", model, "--json"]
    for s in sets:
        args += ["--set", s]
    return args


def _sessions(home: Path):
    return connect(f"sqlite:///{home / 'prefilter-qa.db'}")


def _start_worker(home: Path, *extra: str) -> subprocess.Popen[str]:
    env = os.environ | {"PREFILTER_QA_HOME": str(home), "PREFILTER_QA_THREADS": "1"}
    env.pop("PREFILTER_QA_DATABASE_URL", None)
    return subprocess.Popen([sys.executable, "-m", "engine.cli", "worker", "--poll", "0.2", *extra],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _job(sessions, job_id: int):
    with sessions.begin() as s:
        j = jq.get_job(s, job_id)
        return j.status, j.progress, j.child_pid, j.error


@pytest.fixture
def tiny_home(tmp_path: Path, tiny_demo: Path) -> Path:
    home = tmp_path / "ws"
    cli("import", str(tiny_demo), "--name", "tiny", home=home)
    return home


def test_kill_9_of_a_running_child_fails_its_job_and_the_next_job_runs(tiny_home: Path) -> None:
    long_job = json.loads(cli(*_train_args(LONG_AE), home=tiny_home).stdout)["job_id"]
    short_job = json.loads(cli(*_train_args(TINY_AE), home=tiny_home).stdout)["job_id"]
    sessions = _sessions(tiny_home)
    worker = _start_worker(tiny_home, "--idle-exit", "1")
    try:
        wait_for(lambda: _job(sessions, long_job)[1] > 0, what="training progress")
        pid = _job(sessions, long_job)[2]
        os.kill(pid, signal.SIGKILL)
        status, _, _, error = wait_for(
            lambda: _job(sessions, long_job) if _job(sessions, long_job)[0] != "running" else None)
        assert status == "failed" and "SIGKILL" in error
        wait_for(lambda: _job(sessions, short_job)[0] in jq.FINAL, what="the next job")
        assert _job(sessions, short_job)[0] == "succeeded", _job(sessions, short_job)
        worker.wait(timeout=60)
    finally:
        worker.kill()
    runs = json.loads(cli("runs", "--json", home=tiny_home).stdout)
    assert {r["status"] for r in runs} == {"failed", "succeeded"}


def test_a_killed_dfr_training_leaves_no_feature_cache(tiny_home: Path) -> None:
    job_id = json.loads(cli(*_train_args(LONG_DFR, "dfr"), home=tiny_home).stdout)["job_id"]
    sessions = _sessions(tiny_home)
    with sessions.begin() as s:
        cache = tiny_home / "runs" / str(jq.get_job(s, job_id).run_id) / FEATURE_CACHE_NAME
    worker = _start_worker(tiny_home, "--idle-exit", "1")
    try:
        wait_for(lambda: _job(sessions, job_id)[1] > 0.05 and cache.exists(), what="DFR epochs on the cache")
        os.kill(_job(sessions, job_id)[2], signal.SIGKILL)
        wait_for(lambda: _job(sessions, job_id)[0] == "failed", what="failed")
        worker.wait(timeout=60)
    finally:
        worker.kill()
    assert not cache.exists()


def test_cancel_a_running_job_kills_its_child(tiny_home: Path) -> None:
    job_id = json.loads(cli(*_train_args(LONG_AE), home=tiny_home).stdout)["job_id"]
    sessions = _sessions(tiny_home)
    worker = _start_worker(tiny_home)
    try:
        wait_for(lambda: _job(sessions, job_id)[1] > 0, what="training progress")
        pid = _job(sessions, job_id)[2]
        out = json.loads(cli("cancel", str(job_id), "--json", home=tiny_home).stdout)
        assert out["status"] == "running"  # requested; the worker stops it
        wait_for(lambda: _job(sessions, job_id)[0] == "cancelled", what="cancelled")
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        jobs = json.loads(cli("jobs", "--json", home=tiny_home).stdout)
        assert set(jobs[0]) >= {"id", "kind", "status", "progress", "error"}
        assert jobs[0]["status"] == "cancelled"
        assert json.loads(cli("runs", str(jobs[0]["run_id"]), "--json", home=tiny_home).stdout)[
            "status"] == "cancelled"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)


def test_a_job_whose_worker_died_is_failed_by_the_next_worker(tiny_home: Path) -> None:
    sessions = _sessions(tiny_home)
    with sessions.begin() as s:
        elsewhere = jq.enqueue_job(s, "evaluate", {}).id
        local = jq.enqueue_job(s, "evaluate", {}).id
    with sessions.begin() as s:
        a = jq.claim_next_job(s, "otherhost:4242")
        a.heartbeat_at = utcnow() - timedelta(minutes=10)
        b = jq.claim_next_job(s, f"{os.uname().nodename}:999999")  # this host, no such pid
    worker = _start_worker(tiny_home, "--once")
    worker.wait(timeout=60)
    assert "stopped responding" in _job(sessions, elsewhere)[3]
    assert "is gone" in _job(sessions, local)[3]
    assert _job(sessions, elsewhere)[0] == _job(sessions, local)[0] == "failed"


def test_trained_runs_have_artifacts_and_new_evaluations(trained_workspace, tmp_path: Path) -> None:
    from tests.conftest import copy_workspace

    home = copy_workspace(trained_workspace.home, tmp_path / "copy")
    run = json.loads(cli("runs", str(trained_workspace.dfr_run), "--json", home=home).stdout)
    assert {"id", "model", "preset", "status", "config", "metrics", "threshold"} <= set(run)
    m = run["metrics"]
    assert {"image_auroc", "image_auroc_ci95", "pixel_auroc", "aupro", "f1_max", "f1_threshold",
            "fpr_at_full_recall", "per_defect"} <= set(m)
    assert 0.0 <= m["image_auroc"] <= 1.0 and len(m["image_auroc_ci95"]) == 2
    assert run["threshold"]["set_by"] == "auto" and run["threshold"]["image"] == m["f1_threshold"]
    assert Path(run["checkpoint"]).is_file()
    first = run["evaluation_id"]
    again = json.loads(cli("evaluate", "--run", str(run["id"]), "--wait", "--json", home=home).stdout)
    assert again["evaluation_id"] != first  # each evaluation is its own record
    ev_dir = home / "runs" / str(run["id"]) / "evaluations" / str(again["evaluation_id"])
    assert (ev_dir / "metrics.json").is_file() and list((ev_dir / "heatmaps").glob("*.npy"))


def test_region_of_interest_reaches_training_and_evaluation(tiny_home: Path) -> None:
    import numpy as np

    from db import datasets as dq
    from engine.services.masks import save_roi

    sessions = _sessions(tiny_home)
    roi = np.zeros((64, 64), bool)  # drawn at image size; the model's input is smaller here
    roi[:, :32] = True
    with sessions.begin() as s:
        save_roi(s, tiny_home / "masks", dq.get_dataset(s, "tiny").id, roi, base_version=None, actor=system_actor("qa"))
    sets = ["input_size=32" if x.startswith("input_size") else x for x in TINY_AE]
    run = json.loads(cli(*_train_args(sets), "--wait", home=tiny_home).stdout)
    assert run["status"] == "succeeded"
    maps = sorted((tiny_home / "runs" / str(run["id"]) / "evaluations").rglob("heatmaps/*.npy"))
    assert maps
    for path in maps:
        amap = np.load(path).astype(np.float32)
        assert amap.shape == (32, 32)
        assert np.all(amap[:, 16:] == 0) and np.any(amap[:, :16] > 0)


def test_a_dataset_without_test_images_gets_the_ok_only_threshold(tmp_path: Path, tiny_demo: Path) -> None:
    import shutil

    folder = tmp_path / "okonly"
    shutil.copytree(tiny_demo / "train", folder / "train")
    home = tmp_path / "ws"
    cli("import", str(folder), "--name", "tiny", home=home)
    run = json.loads(cli(*_train_args(TINY_AE), "--wait", home=home).stdout)
    assert run["status"] == "succeeded"
    assert run["threshold"]["rule"] == "ok_only" and run["threshold"]["set_by"] == "auto"
    assert run["metrics"]["image_auroc"] is None
