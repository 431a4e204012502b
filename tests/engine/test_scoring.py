"""`prefilter-qa predict`: the run's active threshold (and review band) decide, per file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from db import connect
from db import decisions as tq
from db.auth import system_actor
from db.models import Prediction
from tests import fixtures_files as ff
from tests.conftest import cli, copy_workspace


def test_predict_applies_the_active_threshold_and_reports_bad_files(trained_workspace, tmp_path: Path) -> None:
    home = copy_workspace(trained_workspace.home, tmp_path / "ws")
    run_id = trained_workspace.dfr_run
    images = sorted((trained_workspace.home.parent.parent).rglob("test/nok/*/*.png"))[:2]
    images += sorted((trained_workspace.home.parent.parent).rglob("test/ok/*.png"))[:2]
    assert len(images) == 4
    broken = ff.make_truncated_jpeg(tmp_path / "broken.jpg")
    first = json.loads(cli("predict", "--run", str(run_id), *map(str, images), "--json", home=home).stdout)
    scores = sorted(r["score"] for r in first)
    lo, mid, hi = scores[0], (scores[1] + scores[2]) / 2, scores[3]

    sessions = connect(f"sqlite:///{home / 'prefilter-qa.db'}")
    with sessions.begin() as s:
        base = tq.active_threshold(s, run_id).id
        tq.save_threshold(s, run_id, base_id=base, image_threshold=mid, review_band=(mid, hi),
                          actor=system_actor("qa"), note="test band")
    out = cli("predict", "--run", str(run_id), *map(str, images), str(broken), "--json", home=home, check=False)
    assert out.returncode == 3, out.stderr  # some scored, one not
    rows = json.loads(out.stdout)
    assert [r["path"] for r in rows] == [*map(str, images), str(broken)]
    for r in rows[:4]:
        assert set(r) >= {"path", "score", "verdict", "heatmap"} and r["error"] is None
        expected = "OK" if r["score"] < mid else "REVIEW" if r["score"] < hi else "NOK"
        assert r["verdict"] == expected and Path(r["heatmap"]).is_file()
    assert {r["verdict"] for r in rows[:4]} >= {"OK", "NOK"}
    assert rows[4]["score"] is None and "truncated" in rows[4]["error"]
    with sessions.begin() as s:
        stored = s.query(Prediction).filter_by(run_id=run_id).all()
        assert len(stored) == 4 + 5 and {p.threshold_id for p in stored[4:]} != {base}


def test_predict_explains_the_score_skips_heatmaps_and_appends_results(trained_workspace, tmp_path: Path) -> None:
    """DFR's default scores the most unusual stage: a second overlay shows that map and where its
    maximum is; --no-heatmaps writes none; --results appends per call; overlays are group-readable."""
    import csv
    import os
    import stat

    import cv2

    home = copy_workspace(trained_workspace.home, tmp_path / "ws")
    run_id = str(trained_workspace.dfr_run)
    images = sorted((trained_workspace.home.parent.parent).rglob("test/nok/*/*.png"))[:2]
    log = tmp_path / "shift" / "results.csv"
    out = tmp_path / "maps"
    rows = json.loads(cli("predict", "--run", run_id, *map(str, images), "--out", str(out),
                          "--results", str(log), "--json", home=home).stdout)
    for r, img in zip(rows, images):
        heat, score = Path(r["heatmap"]), Path(r["score_map"])
        assert heat.is_file() and score.is_file() and score.name.endswith("_score.png")
        assert cv2.imread(str(score)).shape == cv2.imread(str(img)).shape
        assert not np.array_equal(cv2.imread(str(score)), cv2.imread(str(heat)))
        row, col = r["peak"]
        assert 0 <= row < 64 and 0 <= col < 64
        mode = stat.S_IMODE(os.stat(heat).st_mode)
        assert mode & stat.S_IRGRP, oct(mode)  # readable by the group (was 0600)
    quiet = json.loads(cli("predict", "--run", run_id, *map(str, images), "--out", str(tmp_path / "none"),
                           "--no-heatmaps", "--results", str(log), "--json", home=home).stdout)
    assert all(r["heatmap"] is None and r["score_map"] is None and r["score"] is not None for r in quiet)
    assert not list((tmp_path / "none").glob("*.png"))  # no overlay written
    assert [r["score"] for r in quiet] == [r["score"] for r in rows]
    with log.open() as fh:
        logged = list(csv.DictReader(fh))
    assert len(logged) == 4 and [x["path"] for x in logged] == [str(p) for p in images] * 2
    assert {x["run_id"] for x in logged} == {run_id} and all(len(x["sha256"]) == 64 for x in logged)
    assert float(logged[2]["score"]) == rows[0]["score"] and logged[2]["heatmap"] == ""
    jl = tmp_path / "r.jsonl"
    cli("predict", "--run", run_id, str(images[0]), "--no-heatmaps", "--results", str(jl), home=home)
    assert json.loads(jl.read_text().splitlines()[0])["verdict"] in ("OK", "REVIEW", "NOK")
    bad = tmp_path / "other.csv"
    bad.write_text("a,b\n1,2\n")
    proc = cli("predict", "--run", run_id, str(images[0]), "--results", str(bad), home=home, check=False)
    assert proc.returncode != 0 and "other.csv" in proc.stderr and bad.read_text() == "a,b\n1,2\n"
