"""`prefilter-qa report`: the CSV's rows are the evaluation's, the PDF is a multi-page report."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from db import connect
from db import decisions as tq
from db import runs as rq
from db.models import Threshold
from tests.conftest import cli, copy_workspace


@pytest.fixture(scope="module")
def reported(trained_workspace, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A copy of the trained workspace whose DFR run has a saved threshold with a review band."""
    home = copy_workspace(trained_workspace.home, tmp_path_factory.mktemp("report") / "ws")
    run_id = trained_workspace.dfr_run
    sessions = connect(f"sqlite:///{home / 'prefilter-qa.db'}")
    with sessions.begin() as s:
        scores = sorted(sc.score for sc in rq.evaluation_scores(s, rq.latest_evaluation(s, run_id).id))
        mid = float(np.median(scores))
        active = tq.active_threshold(s, run_id)
        s.add(Threshold(run_id=run_id, parent_id=active.id, image_threshold=mid,  # a row as a save writes it
                        pixel_threshold=active.pixel_threshold, review_low=scores[2], review_high=mid + 1e-9,
                        rule="manual", set_by="qa", note="change request 42"))
    return home, run_id


def test_csv_report_has_one_row_per_test_image_with_the_active_rule(reported, tmp_path: Path) -> None:
    home, run_id = reported
    out = tmp_path / "r.csv"
    info = json.loads(cli("report", "--run", str(run_id), "--format", "csv", "--out", str(out), "--json",
                          home=home).stdout)
    assert info["path"] == str(out) and out.stat().st_size == info["bytes"]
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    sessions = connect(f"sqlite:///{home / 'prefilter-qa.db'}")
    with sessions.begin() as s:
        ev = rq.latest_evaluation(s, run_id)
        stored = {sc.image_id: sc for sc in rq.evaluation_scores(s, ev.id)}
        t = tq.active_threshold(s, run_id)
        lo, hi, px = t.review_low, t.review_high, t.pixel_threshold
    assert sorted(int(r["image_id"]) for r in rows) == sorted(stored) and len(rows) == 10
    verdicts = set()
    for r in rows:
        sc = stored[int(r["image_id"])]
        assert float(r["score"]) == sc.score and r["label"] == sc.label and (r["defect_type"] or None) == sc.defect_type
        expected = "OK" if sc.score < lo else "REVIEW" if sc.score < hi else "NOK"
        assert r["verdict"] == expected and float(r["review_low"]) == lo and float(r["review_high"]) == hi
        verdicts.add(r["verdict"])
        assert Path(r["path"]).is_file() and Path(r["heatmap"]).is_file() and Path(r["score_map"]).is_file()
        assert int(r["predicted_pixels"]) >= 0 and float(r["pixel_threshold"]) == px
        if sc.label == "nok":
            assert int(r["mask_pixels"]) > 0  # the demo's NOK images come with masks
        else:
            assert r["mask_pixels"] == ""
    assert verdicts == {"OK", "REVIEW", "NOK"}
    assert [float(r["score"]) for r in rows] == sorted((float(r["score"]) for r in rows), reverse=True)


def test_pdf_report_is_a_multi_page_pdf_with_the_run_and_its_metrics(reported, tmp_path: Path) -> None:
    from pypdf import PdfReader

    home, run_id = reported
    out = tmp_path / "r.pdf"
    cli("report", "--run", str(run_id), "--format", "pdf", "--out", str(out), home=home)
    reader = PdfReader(str(out))
    assert 3 <= len(reader.pages) <= 6
    text = "\n".join(p.extract_text() for p in reader.pages)
    assert f"run #{run_id}" in text and "Image AUROC" in text and "95% CI" in text
    assert "change request 42" in text and "Threshold history" in text and "false reject" in text.lower()
    assert f"run {run_id}" in (reader.metadata.title or "")
    sessions = connect(f"sqlite:///{home / 'prefilter-qa.db'}")
    with sessions.begin() as s:
        auroc = rq.latest_evaluation(s, run_id).metrics["image_auroc"]
    assert f"{auroc:.4f}" in text
    assert len(reader.pages[2].images) >= 2  # the worst cases come with their heatmaps


def test_report_errors_name_the_problem(reported, tmp_path: Path) -> None:
    home, run_id = reported
    bad = cli("report", "--run", "999", "--format", "csv", "--out", str(tmp_path / "x.csv"), home=home, check=False)
    assert bad.returncode == 1 and "no run 999" in bad.stderr and not (tmp_path / "x.csv").exists()
    other = cli("report", "--run", str(run_id), "--evaluation", "999", "--format", "pdf",
                "--out", str(tmp_path / "x.pdf"), home=home, check=False)
    assert other.returncode == 1 and "no evaluation 999" in other.stderr
    folder = cli("report", "--run", str(run_id), "--format", "csv", "--out", str(tmp_path), home=home, check=False)
    assert folder.returncode == 1 and "is a folder" in folder.stderr
