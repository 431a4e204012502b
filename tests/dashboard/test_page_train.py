"""AppTests of the Train page: preset values and help shown, launch queues a job, user errors shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from db import jobs as jq
from db import runs as rq
from engine.config import PRESETS, DFRConfig, field_help
from tests import fixtures_files as ff
from tests.conftest import TrainedWorkspace, copy_workspace
from tests.dashboard.page_helpers import assert_ok, import_tiny, open_page, sessions, texts


@pytest.fixture
def tiny_ws(home: Path, tiny_demo: Path) -> Path:
    import_tiny(tiny_demo)
    return home


def _launch(at):  # type: ignore[no-untyped-def]
    at.button[[b.label for b in at.button].index("Launch training")].click().run()
    assert_ok(at)
    return at


def test_preset_values_and_help_are_shown(tiny_ws: Path) -> None:
    at = open_page("train")
    assert at.radio(key="train_model").value == "dfr"
    assert at.selectbox(key="train_preset_dfr").value == "dfr"
    epochs = at.number_input(key="train_cfg_dfr_dfr_epochs")
    assert epochs.value == PRESETS["dfr"].config.epochs
    assert field_help(DFRConfig)["epochs"] in epochs.help
    assert at.text_input(key="train_cfg_dfr_dfr_backbone_weights").value == "pretrained"  # advanced
    assert "Preset values as they are" in texts(at)
    at.radio(key="train_model").set_value("ae").run()
    assert at.number_input(key="train_cfg_ae_ae_epochs").value == PRESETS["ae"].config.epochs


def test_launch_queues_a_job_with_only_the_changed_fields(tiny_ws: Path) -> None:
    at = open_page("train", user="erika")
    at.number_input(key="train_cfg_dfr_dfr_epochs").set_value(1)
    at.number_input(key="train_cfg_dfr_dfr_input_size").set_value(64)
    at.number_input(key="train_cfg_dfr_dfr_map_size").set_value(16)
    at.text_input(key="train_cfg_dfr_dfr_backbone_weights").input("random")
    at.run()
    assert "`epochs=1`" in texts(at) and "`backbone_weights=random`" in texts(at)
    _launch(at)
    with sessions().begin() as s:
        jobs = jq.list_jobs(s)
        assert len(jobs) == 1 and jobs[0].status == "queued" and jobs[0].created_by == "erika"
        run = rq.get_run(s, jobs[0].run_id)
        cfg = run.config
    assert (cfg["epochs"], cfg["input_size"], cfg["map_size"], cfg["backbone_weights"]) == (1, 64, 16, "random")
    assert cfg["batch_size"] == PRESETS["dfr"].config.batch_size and run.created_by == "erika"
    assert f"Queued **job {jobs[0].id}**" in texts(at)
    links = at.get("page_link")
    assert "jobs" in [link.proto.page for link in links]


def test_bad_value_and_no_training_images_are_clear_errors(home: Path, tmp_path: Path) -> None:
    from engine.cli.commands import import_folder

    ff.make_good_png(tmp_path / "flat" / "a.png")
    import_folder(tmp_path / "flat", "unlabelled", "flat")
    at = open_page("train")
    assert any("no OK images in the train split" in w.value for w in at.warning)
    _launch(at)
    assert any("no OK training images" in e.value for e in at.error), [e.value for e in at.error]
    at.number_input(key="train_cfg_dfr_dfr_epochs").set_value(0)
    _launch(at)
    assert any("epochs must be at least 1" in e.value for e in at.error), [e.value for e in at.error]
    with sessions().begin() as s:
        assert jq.list_jobs(s) == []


def test_retrain_links_the_parent_run(trained_workspace: TrainedWorkspace, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    home = copy_workspace(trained_workspace.home, tmp_path / "ws")
    monkeypatch.setenv("PREFILTER_QA_HOME", str(home))
    at = open_page("train")
    at.selectbox(key="train_parent").set_value(trained_workspace.dfr_run)
    at.text_input(key="train_note").input("after relabelling")
    _launch(at)
    with sessions().begin() as s:
        run = rq.list_runs(s)[0]
    assert (run.parent_run_id, run.note) == (trained_workspace.dfr_run, "after relabelling")
