"""AppTests of the Results page on a copy of the trained workspace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dashboard.state import SELECTED_RUN
from engine.evaluation import decisions as D
from tests.conftest import cli
from tests.dashboard.page_helpers import assert_ok, open_page, texts
from tests.dashboard.qa_helpers import (
    Copy,
    scores_of,
    set_threshold,
    threshold_with_fp_and_fn,
    trained_copy,  # noqa: F401  (fixture)
)


def _badges(at) -> list[str]:  # type: ignore[no-untyped-def]
    return [m.value for m in at.markdown if "-badge[" in m.value]


def _images(at) -> int:  # type: ignore[no-untyped-def]
    return len(at.get("image"))


def test_metrics_table_and_charts(trained_copy: Copy) -> None:
    run = trained_copy.dfr_run
    info = json.loads(cli("runs", str(run), "--json", home=trained_copy.home).stdout)
    at = open_page("results", session={SELECTED_RUN: run})
    assert at.selectbox(key="results_run").value == run
    table = at.dataframe[0].value
    auroc_cell = table.loc["Image AUROC (95% interval)"].iloc[0]
    lo, hi = info["metrics"]["image_auroc_ci95"]
    assert auroc_cell == f"{info['metrics']['image_auroc']:.3f} ({lo:.3f} – {hi:.3f})"
    assert table.loc["Pixel AUROC"].iloc[0] == f"{info['metrics']['pixel_auroc']:.3f}"
    kinds = [c.proto.spec for c in at.get("plotly_chart")]
    assert len(kinds) >= 6  # histogram, confusion, image ROC + PR, pixel ROC + PR
    assert "Active threshold" in texts(at) and f"{info['threshold']['image']:.4g}" in texts(at)


def test_gallery_filters_fp_fn_and_detail(trained_copy: Copy) -> None:
    run = trained_copy.ae_run
    sc = scores_of(run)
    thr = threshold_with_fp_and_fn(sc)
    set_threshold(run, thr)
    out = D.outcomes(sc.y_nok, sc.scores, thr)
    at = open_page("results", session={SELECTED_RUN: run})
    assert len(_badges(at)) == sc.scores.size  # "All": every test image
    for kind in ("FP", "FN"):
        at.radio(key="results_gallery_outcome").set_value(kind).run()
        assert_ok(at)
        badges = _badges(at)
        assert len(badges) == int(np.sum(out == kind)) > 0
        assert all(f"[{kind} · " in b for b in badges)
        # the detail shows the first (highest-scoring) image of the filter
        first = int(sc.image_ids[np.flatnonzero(out == kind)[0]])
        assert f"image id {first}" in texts(at)
        assert "Image score: the largest value of the heatmap" in " ".join(c.value for c in at.caption)  # how the score is made
        assert {"**Original**", "**Heatmap**", "**Ground truth**", "**Predicted mask**"} <= {m.value for m in at.markdown}
        assert "**Score map**" not in {m.value for m in at.markdown}  # the AE's score comes from its heatmap
        assert _images(at) >= len(badges) + 3  # tiles + original, heatmap, predicted mask
    # choosing another tile opens it
    other = int(sc.image_ids[np.flatnonzero(out == "FN")[-1]])
    at.button(key=f"results_gallery_grid_{sc.evaluation_id}_tile_{other}").click().run()
    assert_ok(at)
    assert f"image id {other}" in texts(at)


def test_defect_type_filter_and_opacity(trained_copy: Copy) -> None:
    at = open_page("results", session={SELECTED_RUN: trained_copy.dfr_run})
    # DFR's default scores the most unusual stage: the map that gave the score is shown beside the heatmap
    assert {"**Heatmap**", "**Score map**"} <= {m.value for m in at.markdown}
    assert any("the map the image score was taken from" in c.value for c in at.caption)
    assert [b.proto.label for b in at.get("download_button")] == ["CSV report", "PDF report"]
    types = at.selectbox(key="results_gallery_defect").options
    assert len(types) > 1
    at.selectbox(key="results_gallery_defect").set_value(types[1]).run()
    assert_ok(at)
    assert all(types[1] in m.value for m in at.markdown if "-badge[" in m.value)
    at.slider(key="results_detail_alpha").set_value(0.9).run()
    assert_ok(at)
    at.selectbox(key="results_gallery_defect").set_value("All")
    at.selectbox(key="results_gallery_sort").set_value("lowest score first").run()
    assert_ok(at)
    sc = scores_of(trained_copy.dfr_run)
    assert f"image id {int(sc.image_ids[-1])}" in texts(at)  # the lowest-scoring image is opened


def test_compare_two_runs_on_common_images(trained_copy: Copy) -> None:
    a, b = trained_copy.dfr_run, trained_copy.ae_run
    at = open_page("results", session={SELECTED_RUN: a})
    at.selectbox(key=f"results_compare_{a}").set_value(b).run()
    assert_ok(at)
    assert [t.label for t in at.tabs] == ["Metrics & curves", "Images", "Compare runs"]
    n = scores_of(a).scores.size
    assert f"{n} test images both runs scored" in texts(at)
    table = at.dataframe[-2].value if len(at.dataframe) > 2 else None
    tables = [d.value for d in at.dataframe if "Image AUROC (95% interval)" in getattr(d.value, "index", [])]
    assert any(list(t.columns) == [f"Run #{a} (DFR)", f"Run #{b} (AE)"] for t in tables), table
    assert "Heatmaps side by side" in texts(at)


def test_choose_an_earlier_evaluation(trained_copy: Copy, tmp_path: Path) -> None:
    run = trained_copy.ae_run
    first = scores_of(run).evaluation_id
    cli("evaluate", "--run", str(run), "--wait", home=trained_copy.home)
    at = open_page("results", session={SELECTED_RUN: run})
    picker = at.selectbox(key=f"results_eval_{run}")
    assert len(picker.options) == 2 and picker.value != first  # the latest by default
    picker.set_value(first).run()
    assert_ok(at)
    assert f"evaluation #{first}" in texts(at)


def test_an_evaluation_without_nok_images_still_renders(trained_copy: Copy) -> None:
    """OK-only test sets (a new product): no ROC/PR, but histogram, gallery and thresholds work."""
    from db import runs as rq
    from tests.dashboard.page_helpers import sessions

    run = trained_copy.ae_run
    with sessions().begin() as s:
        ev = rq.latest_evaluation(s, run)
        for row in rq.evaluation_scores(s, ev.id):
            row.label, row.defect_type = "ok", None
        ev.metrics = {k: v for k, v in ev.metrics.items()
                      if k not in ("roc", "pr", "pixel_roc", "image_auroc", "image_auroc_ci95", "per_defect")}
    at = open_page("results", session={SELECTED_RUN: run})
    assert "Image ROC needs both OK and NOK test images." in texts(at)
    at.radio(key="results_gallery_outcome").set_value("TN").run()
    assert_ok(at)
    at.switch_page("dashboard/pages/thresholds.py").run()
    assert_ok(at)
    assert at.button(key=f"thr{run}_sg_f1_max").disabled and not at.button(key=f"thr{run}_sg_ok_only").disabled
    at.switch_page("dashboard/pages/review.py").run()
    assert_ok(at)


def test_a_run_no_better_than_chance_says_so(trained_copy: Copy) -> None:
    """Results and Overview warn exactly for the runs whose image AUROC interval includes 0.5."""
    overview = texts(open_page("overview"))
    for run in (trained_copy.ae_run, trained_copy.dfr_run):
        lo, hi = json.loads(cli("runs", str(run), "--json", home=trained_copy.home).stdout)["metrics"]["image_auroc_ci95"]
        at = open_page("results", session={SELECTED_RUN: run})
        warned = "no better than chance" in texts(at)
        assert warned == (lo <= 0.5 <= hi), (run, lo, hi)
        assert (f"Run {run} (" in overview and f"[{lo:.2f}, {hi:.2f}] includes 0.5" in overview) == warned


def test_chance_warning_follows_the_interval() -> None:
    assert D.chance_warning({"image_auroc_ci95": [0.41, 0.63]}) is not None
    assert D.chance_warning({"image_auroc_ci95": [0.51, 0.63]}) is None
    assert D.chance_warning({"image_auroc_ci95": [0.2, 0.49]}) is None  # worse than chance, but not by luck
    assert D.chance_warning({}) is None and D.chance_warning(None) is None
