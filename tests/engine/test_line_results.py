"""Line results back in the workspace: `prefilter-qa import-line` after a real line scorer run,
REVIEW/NOK images registered for review, re-import idempotent, foreign bundles refused, drift."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from db import connect
from db import datasets as dq
from db import releases as relq
from engine.evaluation.decisions import score_drift
from engine.services.line import line_summary
from tests.conftest import cli, copy_workspace


@pytest.fixture
def line_run(released: dict, tmp_path: Path) -> dict:
    """A private copy of the released workspace (nothing imported from the line yet)."""
    home = copy_workspace(released["home"], tmp_path / "ws")
    return released | {"home": home, "sessions": connect(f"sqlite:///{home / 'prefilter-qa.db'}"), "tmp": tmp_path,
                       "released_home": released["home"]}


def test_import_line_stores_results_and_queues_doubtful_images(line_run: dict) -> None:
    home, run_id, results = line_run["home"], line_run["run"], line_run["results"]
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    doubtful = {r["path"] for r in rows if r["verdict"] in ("REVIEW", "NOK")}
    assert doubtful and {r["verdict"] for r in rows} >= {"OK", "REVIEW"}
    report = json.loads(cli("import-line", str(results), "--run", str(run_id), "--user", "lena", "--json",
                            home=home).stdout)
    assert report["stored"] == len(rows) and report["already_stored"] == 0 and not report["skipped"]
    assert report["queued_for_review"] == len(doubtful) and not report["missing_images"]
    with line_run["sessions"].begin() as s:
        stored = relq.line_results(s, run_id)
        assert {r.path for r in stored if r.image_id is not None} == doubtful
        assert all(r.imported_by == "lena" and r.release_id is not None for r in stored)
        img = dq.get_image(s, next(r.image_id for r in stored if r.image_id is not None))
        assert img.source == "line" and img.label == "unknown" and Path(img.path).is_file()
        assert str(home) in img.path  # copied into the workspace: the line PC may clean its folder
        summary = line_summary(s, run_id)
        assert sum(sum(day.values()) for day in summary.counts.values()) == len(rows)
        assert summary.drift is not None and summary.drift["n_current"] == len(rows)
    again = json.loads(cli("import-line", str(results), "--run", str(run_id), "--json", home=home).stdout)
    assert again["stored"] == 0 and again["already_stored"] == len(rows)


def test_import_line_refuses_foreign_bundles_and_reports_bad_lines(line_run: dict, trained_workspace) -> None:
    home, tmp = line_run["home"], line_run["tmp"]
    text = line_run["results"].read_text().splitlines()
    mixed = tmp / "mixed.jsonl"
    mixed.write_text("\n".join([text[0], "{not json", json.dumps({"path": "x.png"}), text[1]]) + "\n")
    ok = json.loads(cli("import-line", str(mixed), "--run", str(line_run["run"]), "--json", home=home).stdout)
    assert len(ok["skipped"]) == 2 and all("not a line result" in s["reason"] for s in ok["skipped"])
    foreign = cli("import-line", str(line_run["results"]), "--run", str(trained_workspace.ae_run), home=home,
                  check=False)
    assert foreign.returncode == 1 and "none of its results belongs to a release of run" in foreign.stderr
    missing = cli("import-line", str(tmp / "nope.jsonl"), "--run", str(line_run["run"]), home=home, check=False)
    assert missing.returncode == 1 and "nope.jsonl: cannot read" in missing.stderr


def test_images_moved_off_the_line_pc_are_found_by_name(line_run: dict, tmp_path: Path) -> None:
    home = line_run["home"]
    moved = tmp_path / "archive"
    line_run["line_dir"].rename(moved)
    try:
        gone = json.loads(cli("import-line", str(line_run["results"]), "--run", str(line_run["run"]), "--json",
                              home=home).stdout)
        assert gone["missing_images"] and gone["queued_for_review"] == 0
        home2 = copy_workspace(line_run["released_home"], tmp_path / "ws2")
        found = json.loads(cli("import-line", str(line_run["results"]), "--run", str(line_run["run"]), "--images",
                               str(moved), "--json", home=home2).stdout)
        assert not found["missing_images"] and found["queued_for_review"] > 0
    finally:
        moved.rename(line_run["line_dir"])


def test_drift_is_a_shift_of_the_median_measured_in_ok_spreads() -> None:
    ref = np.linspace(0.0, 1.0, 101)  # 5th..95th percentile spread 0.9
    assert score_drift(ref, ref)["drift"] is False
    moved = score_drift(ref, ref + 0.5)
    assert moved["drift"] is True and moved["shift_of_spread"] == pytest.approx(0.5 / 0.9)
    assert score_drift(ref, ref + 0.4)["drift"] is False  # 0.44 of the spread, under half
    assert score_drift(ref[:1], ref) is None and score_drift(ref, np.array([])) is None


def test_watch_copied_bundle_gives_the_dashboards_verdicts(line_run: dict, tmp_path: Path) -> None:
    """The done-when of the line: the release copied to another folder, `watch --once` without torch over
    the camera folder, the same verdicts as `predict` (the dashboard's rule), REVIEW parts then queued."""
    import shutil

    from tests.conftest import line_cli

    bundle = tmp_path / "line-pc" / "bundle"
    shutil.copytree(line_run["released_home"].parent / "bundle", bundle)  # as a USB stick would
    out = line_cli("watch", str(bundle), str(line_run["line_dir"]), "--once", "--results", str(tmp_path / "w.jsonl"),
                   cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    watched = {r["path"]: r for r in (json.loads(x) for x in (tmp_path / "w.jsonl").read_text().splitlines())}
    files = sorted(line_run["line_dir"].iterdir())
    assert set(watched) == {str(p.resolve()) for p in files}
    predicted = json.loads(cli("predict", "--run", str(line_run["run"]), *map(str, files), "--json",
                               home=line_run["home"]).stdout)
    assert [watched[str(Path(p["path"]).resolve())]["verdict"] for p in predicted] == [p["verdict"] for p in predicted]
    report = json.loads(cli("import-line", str(tmp_path / "w.jsonl"), "--run", str(line_run["run"]), "--json",
                            home=line_run["home"]).stdout)
    review = sum(1 for r in watched.values() if r["verdict"] in ("REVIEW", "NOK"))
    assert review and report["queued_for_review"] == review
