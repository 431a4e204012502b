"""Shared fixtures: isolated workspaces, a tiny demo dataset, and a workspace with trained runs.

Everything here is real: SQLite files, the importer, the job worker and its child processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.workspace import DATABASE_URL_ENV, HOME_ENV

REPO = Path(__file__).resolve().parents[1]
TINY = {"size": 64, "n_train_ok": 10, "n_test_ok": 4, "n_test_nok": 6, "seed": 1}
# Settings that make both families train in seconds on CPU (random backbone weights).
TINY_AE = ["input_size=64", "epochs=1", "batch_size=4", "num_workers=0"]
# score_combine=max: the runs have a score map besides the heatmap (auto's fine-detail candidate)
TINY_DFR = ["input_size=64", "epochs=1", "batch_size=4", "num_workers=0", "backbone_weights=random",
            "map_size=16", "pca_samples_per_image=64", "feature_cache_gb=0", "score_combine=max"]


def cli(*args: str, home: Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `prefilter-qa ARGS` in a subprocess against workspace `home`."""
    env = os.environ | {HOME_ENV: str(home), "PREFILTER_QA_THREADS": "1"}
    env.pop(DATABASE_URL_ENV, None)
    proc = subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"prefilter-qa {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def wait_for(predicate: Callable[[], Any], timeout: float = 240.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy, and return that; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh workspace folder used by in-process code (env set, DB URL override removed)."""
    ws = tmp_path / "workspace"
    monkeypatch.setenv(HOME_ENV, str(ws))
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    return ws


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64² demo dataset folder in the seed layout (10 train OK, 4 test OK, 6 test NOK)."""
    from engine.demo.generate import DemoSpec, generate_demo

    return generate_demo(tmp_path_factory.mktemp("tiny-demo") / "demo", DemoSpec(**TINY)).root


@dataclass(frozen=True)
class TrainedWorkspace:
    home: Path
    dataset: str
    ae_run: int
    dfr_run: int


@pytest.fixture(scope="session")
def trained_workspace(tmp_path_factory: pytest.TempPathFactory, tiny_demo: Path) -> TrainedWorkspace:
    """A workspace with the tiny demo imported and one trained + evaluated run per family.

    Built once per test session through the real CLI and worker. Tests that modify it must
    copy it first (`copy_workspace`).
    """
    import json

    home = tmp_path_factory.mktemp("trained") / "workspace"
    cli("import", str(tiny_demo), "--name", "tiny", home=home)
    runs = {}
    for model, sets in (("ae", TINY_AE), ("dfr", TINY_DFR)):
        args = ["train", "--dataset", "tiny", "--model", model, "--json"]
        for s in sets:
            args += ["--set", s]
        runs[model] = json.loads(cli(*args, home=home).stdout)["run_id"]
    cli("worker", "--idle-exit", "0", home=home)
    for run_id in runs.values():
        info = json.loads(cli("runs", str(run_id), "--json", home=home).stdout)
        assert info["status"] == "succeeded" and info["metrics"], info
    return TrainedWorkspace(home=home, dataset="tiny", ae_run=runs["ae"], dfr_run=runs["dfr"])


def copy_workspace(src: Path, dst: Path) -> Path:
    """A private copy of a workspace (SQLite file included) that a test may modify.

    Paths stored in the database keep pointing at the original's image files (read-only) but
    run folders are rewritten to the copy.
    """
    import shutil
    import sqlite3

    shutil.copytree(src, dst)
    con = sqlite3.connect(dst / "prefilter-qa.db")
    with con:
        for table, col in (("runs", "checkpoint"), ("evaluations", "directory"), ("masks", "path"),
                           ("rois", "path"), ("jobs", "log_path")):
            con.execute(f"UPDATE {table} SET {col} = replace({col}, ?, ?)", (str(src), str(dst)))
        con.execute("DELETE FROM workers")  # the original's worker does not serve the copy
    con.close()
    return dst


@pytest.fixture(autouse=True)
def _no_worker_autostart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages under AppTest must not spawn background workers; tests start their own."""
    monkeypatch.setenv("PREFILTER_QA_AUTOSTART_WORKER", "0")


def line_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`prefilter-qa-line ARGS` in a process where torch (and the engine) cannot be imported."""
    code = ("import sys; sys.modules['torch'] = None; sys.modules['engine'] = None\n"
            "from prefilter_qa_line.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def demo_test_images(root: Path) -> tuple[list[Path], list[Path]]:
    """The OK and the NOK test images of a demo folder (seed layout), each sorted."""
    return sorted((root / "test" / "ok").glob("*.png")), sorted((root / "test" / "nok").glob("*/*.png"))


@pytest.fixture(scope="session")
def released(trained_workspace: TrainedWorkspace, tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy of the trained workspace whose DFR run has a review band and a release, and a line results
    file of that bundle scored by `prefilter-qa-line` (torch blocked) on new files of the test images.
    Tests copy `home` before they change it."""
    import json

    import numpy as np
    from PIL import Image

    from db import connect
    from db import decisions as tq
    from db.auth import system_actor

    tmp = tmp_path_factory.mktemp("line")
    home = copy_workspace(trained_workspace.home, tmp / "ws")
    run_id = trained_workspace.dfr_run
    ok, nok = demo_test_images(tiny_demo)
    images = ok + nok
    first = json.loads(cli("predict", "--run", str(run_id), *map(str, images), "--json", home=home).stdout)
    s = np.sort([r["score"] for r in first])
    sessions = connect(f"sqlite:///{home / 'prefilter-qa.db'}")
    with sessions.begin() as ses:
        base = tq.active_threshold(ses, run_id).id
        mid = float((s[len(s) // 2] + s[len(s) // 2 + 1]) / 2)
        tq.save_threshold(ses, run_id, actor=system_actor("qa"), base_id=base, image_threshold=mid,
                          review_band=(float(s[2] + s[3]) / 2, mid), note="band for the line")
    cli("export", "--run", str(run_id), "--out", str(tmp / "bundle"), home=home)
    line_dir = tmp / "line-pc"
    line_dir.mkdir()
    for p in images:  # the camera's folder on the line PC: the same pixels, new files (other bytes)
        Image.open(p).save(line_dir / f"{p.parent.name}-{p.name}", compress_level=9)
    out = line_cli("score", str(tmp / "bundle"), *map(str, sorted(line_dir.iterdir())), "--results",
                str(tmp / "results.jsonl"), cwd=tmp)
    assert out.returncode == 0, out.stderr
    return {"home": home, "run": run_id, "results": tmp / "results.jsonl", "line_dir": line_dir}
