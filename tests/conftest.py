"""Shared fixtures: isolated workspaces, a tiny demo dataset, and a workspace with trained runs.

Everything here is real: SQLite files, the importer, the job worker and its child processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.workspace import DATABASE_URL_ENV, HOME_ENV

REPO = Path(__file__).resolve().parents[1]
TINY = {"size": 64, "n_train_ok": 10, "n_test_ok": 4, "n_test_nok": 6, "seed": 1}
# Settings that make both families train in seconds on CPU (random backbone weights).
TINY_AE = ["input_size=64", "epochs=1", "batch_size=4", "num_workers=0"]
TINY_DFR = ["input_size=64", "epochs=1", "batch_size=4", "num_workers=0", "backbone_weights=random",
            "map_size=16", "pca_samples_per_image=64", "feature_cache_gb=0"]


def cli(*args: str, home: Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `prefilter-qa ARGS` in a subprocess against workspace `home`."""
    env = os.environ | {HOME_ENV: str(home), "PREFILTER_QA_THREADS": "1"}
    env.pop(DATABASE_URL_ENV, None)
    proc = subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"prefilter-qa {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


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
