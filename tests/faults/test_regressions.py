"""One regression test per defect found by fault injection (each failed on the code before the fix).

They drive the product from outside where they can (the CLI, real worker processes, plain SQL), so
what they check does not depend on how the fix is built.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from engine.workspace import FEATURE_CACHE_NAME
from tests.conftest import TINY_AE, copy_workspace
from tests.faults.conftest import postgres_url
from tests.faults.harness import Site, alive, kill9, wait_for

pytestmark = pytest.mark.faults

# An autoencoder training that runs some seconds after its worker is killed (it would finish and
# store its results if nothing stopped it).
AE_SECONDS = ["input_size=64", "epochs=60", "batch_size=2", "num_workers=0"]
DFR_LONG = ["input_size=64", "epochs=2000", "batch_size=4", "num_workers=0", "backbone_weights=random",
            "map_size=16", "pca_samples_per_image=64", "feature_cache_gb=1"]


def _cli_train(site: Site, sets: list[str], model: str = "ae", *extra: str) -> dict:
    args = ["train", "--dataset", "tiny", "--model", model, "--json", *extra]
    for s in sets:
        args += ["--set", s]
    return json.loads(site.cli(*args).stdout)


def _progress(site: Site, job_id: int) -> float:
    return site.rows(f"SELECT progress FROM jobs WHERE id = {job_id}")[0][0]


@pytest.fixture
def site(tmp_path: Path, tiny_demo: Path) -> Site:
    s = Site(tmp_path / "ws")
    s.cli("import", str(tiny_demo), "--name", "tiny")
    return s


def _after_the_child(site: Site, job_id: int, run_id: int, child: int) -> None:
    """Once the killed job's child is gone: nothing of the job may have been stored as a success."""
    wait_for(lambda: not alive(child), 240, "the job's child to be gone")
    time.sleep(0.5)
    assert site.job(job_id)["status"] == "failed"
    assert site.rows(f"SELECT status FROM runs WHERE id = {run_id}")[0][0] != "succeeded"
    assert site.rows(f"SELECT count(*) FROM evaluations WHERE run_id = {run_id} AND status = 'succeeded'")[0][0] == 0
    assert site.rows(f"SELECT count(*) FROM thresholds WHERE run_id = {run_id}")[0][0] == 0


def test_1_worker_killed_mid_training_its_child_never_makes_the_run_succeed(site: Site) -> None:
    out = _cli_train(site, AE_SECONDS)
    worker = site.start_worker("--idle-exit", "1")
    wait_for(lambda: _progress(site, out["job_id"]) > 0, 240, "training progress")
    child = site.job(out["job_id"])["child_pid"]
    kill9(worker.pid)
    worker.wait(timeout=30)
    nxt = site.start_worker("--idle-exit", "1")  # finds the dead worker's job
    site.wait_final(out["job_id"])
    assert not alive(child), "the child of a failed job is still running"
    nxt.wait(timeout=120)
    _after_the_child(site, out["job_id"], out["run_id"], child)


def test_1_a_child_whose_job_was_failed_elsewhere_stops_without_writing(site: Site) -> None:
    """A reaper on another host cannot kill the child: the child must stop itself when refused."""
    out = _cli_train(site, AE_SECONDS)
    worker = site.start_worker()
    wait_for(lambda: _progress(site, out["job_id"]) > 0, 240, "training progress")
    child = site.job(out["job_id"])["child_pid"]
    kill9(worker.pid)
    worker.wait(timeout=30)
    from sqlalchemy import create_engine, text

    engine = create_engine(site.url)
    with engine.begin() as conn:  # what a reaper on another host writes
        conn.execute(text("UPDATE jobs SET status = 'failed', error = 'reaped elsewhere' WHERE id = :j"),
                     {"j": out["job_id"]})
        conn.execute(text("UPDATE runs SET status = 'failed' WHERE id = :r"), {"r": out["run_id"]})
    engine.dispose()
    _after_the_child(site, out["job_id"], out["run_id"], child)
    log = (site.home / "runs" / str(out["run_id"]) / f"job-{out['job_id']}.log").read_text()
    assert "superseded" in log and "without writing its results" in log, log[-2000:]


def test_2_worker_and_child_killed_leave_no_feature_cache(site: Site) -> None:
    out = _cli_train(site, DFR_LONG, "dfr")
    cache = site.home / "runs" / str(out["run_id"]) / FEATURE_CACHE_NAME
    worker = site.start_worker()
    wait_for(lambda: cache.exists() and _progress(site, out["job_id"]) > 0.05, 240, "DFR epochs on the cache")
    child = site.job(out["job_id"])["child_pid"]
    kill9(worker.pid)
    kill9(child)
    worker.wait(timeout=30)
    site.start_worker("--once").wait(timeout=120)
    assert site.job(out["job_id"])["status"] == "failed"
    assert not cache.exists()


def test_2_a_worker_starting_removes_caches_of_runs_no_job_runs(site: Site) -> None:
    out = _cli_train(site, TINY_AE)
    site.cli("cancel", str(out["job_id"]))
    leftover = site.home / "runs" / str(out["run_id"]) / FEATURE_CACHE_NAME
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"\0" * 4096)  # as a training killed with its worker leaves it
    site.start_worker("--once").wait(timeout=120)
    assert not leftover.exists()


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_4_bad_names_and_users_are_one_line_errors_and_store_nothing(backend: str, tmp_path: Path,
                                                                     tiny_demo: Path) -> None:
    site = Site(tmp_path / "ws", database_url=None if backend == "sqlite" else postgres_url())
    for name in ("../x", "   ", "a\nb", "x" * 300):  # the rest: test_4_dashboard_and_cli_share_...
        _one_line_error(site.cli("import", str(tiny_demo), "--name", name, check=False))
    assert site.rows("SELECT count(*) FROM datasets")[0][0] == 0
    site.cli("import", str(tiny_demo), "--name", "tiny")
    for user in ("u" * 150, "a\nb"):
        proc = site.cli("train", "--dataset", "tiny", "--model", "ae", "--user", user, check=False)
        _one_line_error(proc)
    assert site.rows("SELECT count(*) FROM runs")[0][0] == 0
    assert site.rows("SELECT count(*) FROM jobs")[0][0] == 0


def test_5_reimport_reports_missing_and_changed_files_and_stops_counting_them(tmp_path: Path,
                                                                             tiny_demo: Path) -> None:
    folder = tmp_path / "data"
    shutil.copytree(tiny_demo, folder)
    site = Site(tmp_path / "ws")
    site.cli("import", str(folder), "--name", "tiny")
    counts = {c["name"]: c for c in json.loads(site.cli("datasets", "--json").stdout)}["tiny"]
    gone = min((folder / "train" / "ok").iterdir())
    corrupt = min((folder / "test" / "nok").rglob("*.png"))
    keep = {gone: gone.read_bytes(), corrupt: corrupt.read_bytes()}
    gone.unlink()
    corrupt.write_bytes(b"not an image any more")

    report = json.loads(site.cli("import", str(folder), "--name", "tiny", "--json").stdout)
    assert [m["path"] for m in report["missing"]] == [str(gone.resolve())]
    assert [c["path"] for c in report["changed"]] == [str(corrupt.resolve())]
    now = {c["name"]: c for c in json.loads(site.cli("datasets", "--json").stdout)}["tiny"]
    assert now["train_ok"] == counts["train_ok"] - 1 and now["test_nok"] == counts["test_nok"] - 1
    assert now["missing"] == 2
    out = _cli_train(site, TINY_AE)  # training and its evaluation leave both out
    snapshot = site.rows(f"SELECT snapshot FROM runs WHERE id = {out['run_id']}")[0][0]
    snapshot = json.loads(snapshot) if isinstance(snapshot, str) else snapshot
    ids = {r[0] for r in site.rows("SELECT id FROM images WHERE file_status <> 'present'")}
    assert len(ids) == 2 and not ids & set(snapshot["train"] + snapshot["test"] + snapshot["holdout"])

    for path, data in keep.items():  # the same content back: counted again
        path.write_bytes(data)
    report = json.loads(site.cli("import", str(folder), "--name", "tiny", "--json").stdout)
    assert report["missing"] == [] and report["changed"] == [] and len(report["restored"]) == 2
    back = {c["name"]: c for c in json.loads(site.cli("datasets", "--json").stdout)}["tiny"]
    assert (back["train_ok"], back["test_nok"], back["missing"]) == (counts["train_ok"], counts["test_nok"], 0)


def test_6_predict_exit_codes_and_one_line_errors(trained_workspace, tmp_path: Path, tiny_demo: Path) -> None:
    site = Site(copy_workspace(trained_workspace.home, tmp_path / "ws"))
    run = str(trained_workspace.ae_run)
    good = [str(p) for p in sorted((tiny_demo / "test" / "ok").iterdir())[:2]]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"no image")
    assert site.cli("predict", "--run", run, *good, check=False).returncode == 0
    assert site.cli("predict", "--run", run, *good, str(bad), check=False).returncode == 3
    assert site.cli("predict", "--run", run, str(bad), str(tmp_path / "nope.png"), check=False).returncode == 2
    proc = site.cli("predict", "--run", "999", *good, check=False)
    assert proc.returncode == 1
    proc = site.cli("predict", "--run", run, "--out", str(bad), *good, check=False)
    assert proc.returncode == 1 and str(bad) in proc.stderr
    _one_line_error(proc)
    assert "exit codes" in site.cli("predict", "--help").stdout

    from engine.errors import UserError
    from engine.services.scoring import predict_paths
    from engine.services.store import open_workspace

    os.environ["PREFILTER_QA_HOME"] = str(site.home)
    try:
        ws, sessions = open_workspace(str(site.home))
        with pytest.raises(UserError, match="NUL"):
            predict_paths(ws, sessions, trained_workspace.ae_run, [Path(good[0]), Path("a\0b.png")])
    finally:
        os.environ.pop("PREFILTER_QA_HOME", None)


def test_7_cancelling_a_queued_training_cancels_its_evaluation(site: Site) -> None:
    out = _cli_train(site, TINY_AE)
    site.cli("cancel", str(out["job_id"]))
    assert site.job(out["job_id"])["status"] == "cancelled"
    assert site.rows(f"SELECT status FROM runs WHERE id = {out['run_id']}")[0][0] == "cancelled"
    assert [r[0] for r in site.rows(f"SELECT status FROM evaluations WHERE run_id = {out['run_id']}")] == ["cancelled"]


def test_7_a_training_that_fails_before_its_evaluation_ends_the_evaluation_too(tmp_path: Path,
                                                                               tiny_demo: Path) -> None:
    folder = tmp_path / "data"
    shutil.copytree(tiny_demo, folder)
    site = Site(tmp_path / "ws")
    site.cli("import", str(folder), "--name", "tiny")
    out = _cli_train(site, TINY_AE)
    shutil.rmtree(folder / "train")  # every training image gone: the child fails before evaluating
    site.start_worker("--once").wait(timeout=180)
    job = site.job(out["job_id"])
    assert job["status"] == "failed" and "no usable OK training image" in job["error"]
    assert [r[0] for r in site.rows(f"SELECT status FROM evaluations WHERE run_id = {out['run_id']}")] == ["failed"]


def test_3_thresholds_must_be_finite_with_an_ordered_band_and_a_short_note(db_url: str) -> None:
    from db import connect
    from db import datasets as dq
    from db import decisions as tq
    from db import runs as rq
    from db.auth import system_actor
    from db.errors import ValidationError

    sessions = connect(db_url)
    with sessions.begin() as s:
        ds = dq.get_or_create_dataset(s, "d", None, None)
        run_id = rq.create_run(s, dataset_id=ds.id, model="ae", preset="ae", config={}).id
    qa = system_actor("qa")
    bad = [{"image_threshold": float("inf")}, {"image_threshold": float("-inf")},
           {"image_threshold": float("nan")}, {"image_threshold": 0.5, "pixel_threshold": float("nan")},
           {"image_threshold": 0.5, "review_band": (0.6, 0.9)},  # the band leaves the threshold out
           {"image_threshold": 0.5, "review_band": (0.9, 0.1)},  # lo > hi: refused, not swapped
           {"image_threshold": 0.5, "review_band": (0.1, float("inf"))},
           {"image_threshold": 0.5, "note": "n" * 5_000_000}, {"image_threshold": "0.5"}]
    for kwargs in bad:
        with pytest.raises(ValidationError), sessions.begin() as s:
            tq.save_threshold(s, run_id, actor=qa, base_id=None, **kwargs)
    with sessions.begin() as s:
        assert tq.threshold_history(s, run_id) == []
        row = tq.save_threshold(s, run_id, actor=qa, base_id=None, image_threshold=0.5,
                                review_band=(0.4, 0.5), note="  agreed with quality  ")
        assert (row.review_low, row.review_high, row.note) == (0.4, 0.5, "agreed with quality")


def test_4_dashboard_and_cli_share_the_database_layer_refusal(db_url: str) -> None:
    """The refusal comes from the database layer itself: the same error on SQLite and PostgreSQL."""
    from db import connect
    from db import datasets as dq
    from db.errors import ValidationError

    sessions = connect(db_url)
    for name in ("../x", "", "  ", "a\nb", "n" * 201, "nul\0byte"):
        with pytest.raises(ValidationError, match="dataset name"), sessions.begin() as s:
            dq.get_or_create_dataset(s, name, None, None)
    with sessions.begin() as s:
        assert dq.dataset_counts(s) == []

