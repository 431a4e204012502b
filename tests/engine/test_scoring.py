"""`prefilter-qa predict`: the run's active threshold (and review band) decide, per file."""

from __future__ import annotations

import json
from pathlib import Path

from db import connect
from db import decisions as tq
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
                          set_by="qa", note="test band")
    out = cli("predict", "--run", str(run_id), *map(str, images), str(broken), "--json", home=home)
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
