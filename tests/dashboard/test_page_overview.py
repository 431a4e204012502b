"""AppTests of the Overview page: the workflow on a fresh workspace, runs + metrics, active jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from db.auth import system_actor
from engine.jobs.queue import submit_train
from tests.conftest import TrainedWorkspace, cli, copy_workspace
from tests.dashboard.page_helpers import import_tiny, open_page, sessions, texts


def test_fresh_workspace_explains_the_workflow_with_links(home: Path, tiny_demo: Path) -> None:
    at = open_page("overview")
    assert "No dataset yet" in texts(at)
    import_tiny(tiny_demo)
    at = open_page("overview")
    pages = [link.proto.page for link in at.get("page_link")]
    for name in ("datasets", "annotate", "train", "jobs", "results", "thresholds", "review"):
        assert name in pages, (name, pages)
    assert [m.value for m in at.metric][:2] == ["1", "20"]
    assert "No model trained yet." in texts(at) and "Nothing is running." in texts(at)
    with sessions().begin() as s:  # the first start queues a training (make run): the page says so
        job, _ = submit_train(s, dataset="tiny", model="dfr", actor=system_actor("first start"))
    at = open_page("overview")
    assert any(f"The first training is running** — job #{job.id}, DFR on 'tiny'" in i.value for i in at.info)


def test_runs_with_metrics_thresholds_and_active_jobs(trained_workspace: TrainedWorkspace, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    home = copy_workspace(trained_workspace.home, tmp_path / "ws")
    monkeypatch.setenv("PREFILTER_QA_HOME", str(home))
    with sessions().begin() as s:
        job, _ = submit_train(s, dataset="tiny", model="ae", overrides={"epochs": "1"}, actor=system_actor("erika"))
    at = open_page("overview")
    runs = at.dataframe[1].value
    info = json.loads(cli("runs", str(trained_workspace.dfr_run), "--json", home=home).stdout)
    row = runs[runs["Run"] == trained_workspace.dfr_run].iloc[0]
    m = info["metrics"]
    lo, hi = m["image_auroc_ci95"]
    assert row["Image AUROC (95% CI)"] == f"{m['image_auroc']:.3f} ({lo:.2f}–{hi:.2f})"
    assert row["Pixel AUROC"] == f"{m['pixel_auroc']:.3f}"
    assert row["Threshold"] == f"{info['threshold']['image']:.3f} (auto)"
    assert (row["Dataset"], row["Model"], row["Status"]) == ("tiny", "DFR", "succeeded")
    assert "Running and queued jobs (1)" in texts(at)
    assert f"Job {job.id} · train" in texts(at)
