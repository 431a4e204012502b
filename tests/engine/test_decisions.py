"""engine.evaluation.decisions: the same verdict rule as engine.evaluation.metrics, click semantics, suggestions."""

from __future__ import annotations

import numpy as np
import pytest

from engine.evaluation import decisions as D
from engine.evaluation import metrics as M
from engine.evaluation.pixel_metrics import PixelAccumulator, RangeScanner

Y = np.array([0, 0, 1, 0, 1, 1], bool)
S = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])


def test_outcomes_follow_the_engine_rule() -> None:
    assert D.outcomes(Y, S, 0.4).tolist() == ["TN", "TN", "FN", "FP", "TP", "TP"]  # 0.4 >= 0.4: NOK
    out = D.outcomes(Y, S, 0.4, (0.3, 0.5))
    assert out.tolist() == ["TN", "TN", "REVIEW", "REVIEW", "TP", "TP"]
    v = M.verdicts(S, 0.4, (0.3, 0.5))
    assert ((out == "REVIEW") == (v == "REVIEW")).all()


def test_live_counts_extend_confusion() -> None:
    c = D.live_counts(Y, S, 0.4, (0.3, 0.5))
    assert (c["tp"], c["fn"], c["fp"], c["tn"], c["review_count"]) == (2, 0, 0, 2, 2)
    assert c["reject_rate"] == pytest.approx(2 / 6) and (c["n_ok"], c["n_nok"]) == (3, 3)


def test_suggestions() -> None:
    by = {s.rule: s for s in D.suggestions(Y, S, target_frr=0.5)}
    assert by["f1_max"].value == M.f1_max(Y, S)[1]
    assert by["zero_escape"].value == 0.3  # the lowest NOK score: every NOK rejected at >=
    assert by["ok_only"].value == pytest.approx(np.quantile(S[~Y], 0.5))
    hold = np.array([0.0, 1.0])
    assert {s.rule: s for s in D.suggestions(Y, S, target_frr=0.5, ok_reference=hold)}["ok_only"].value == 0.5
    none = {s.rule: s for s in D.suggestions(np.zeros(3, bool), S[:3], target_frr=0.1)}
    assert none["f1_max"].value is None and none["zero_escape"].value is None


def test_histogram_and_click_semantics() -> None:
    edges = D.histogram_edges(S, 5)
    ok, nok = D.histogram_counts(Y, S, edges)
    assert ok.sum() == 3 and nok.sum() == 3 and edges[0] == 0.1 and edges[-1] == 0.6
    t = D.bar_threshold(edges, 2)
    assert t == edges[2]
    in_bar = (S >= edges[2]) & (S < edges[3])
    assert (M.verdicts(S[in_bar], t) == "NOK").all()  # the clicked bar is rejected...
    assert (M.verdicts(S[S < edges[2]], t) == "OK").all()  # ...and nothing left of it
    assert D.bar_threshold(edges, 99) == edges[-2]
    assert D.box_threshold([0.45, 0.25]) == 0.25
    assert D.histogram_edges(np.array([2.0, 2.0]), 3)[-1] > 2.0  # all tied: a tiny span


def test_roc_threshold_and_operating_point() -> None:
    roc = M.roc_points(Y, S)
    for i, t in enumerate(roc["thresholds"]):
        assert D.roc_threshold(roc["thresholds"], i) == t
        assert D.operating_point(Y, S, t) == pytest.approx((roc["fpr"][i], roc["tpr"][i]))
    with pytest.raises(IndexError):
        D.roc_threshold(roc["thresholds"], len(roc["thresholds"]))


def test_band_error_and_default_band() -> None:
    assert D.band_error(0.4, None) is None and D.band_error(0.4, (0.3, 0.5)) is None
    assert "contain" in D.band_error(0.6, (0.3, 0.5))
    assert "above" in D.band_error(0.4, (0.5, 0.3))

def test_suggested_band_comes_from_ok_and_nok_scores_not_the_score_range() -> None:
    rng = np.random.default_rng(0)
    ok = rng.normal(0, 1, 40)
    nok = np.r_[rng.normal(2.5, 1, 10), rng.uniform(20, 170, 30)]  # a far NOK tail
    y, s = np.r_[np.zeros(40, bool), np.ones(40, bool)], np.r_[ok, nok]
    hold = rng.normal(0, 1, 15)
    b = D.suggest_band(1.5, y, s, hold)
    assert b.low == pytest.approx(min(np.quantile(hold, 0.95), 1.5))
    assert b.high == pytest.approx(max(np.quantile(nok, 0.10), 1.5))
    assert b.low <= 1.5 <= b.high and D.band_error(1.5, (b.low, b.high)) is None
    review_ok = np.mean((ok >= b.low) & (ok < b.high))
    assert review_ok < 0.25  # the old +/- 10 % of the range sent every OK part to review
    assert "held-out OK" in b.why and "NOK test" in b.why
    lo, hi = D.slider_span(y, s, hold, marks=[1.5])
    assert lo <= s[~y].min() and 1.5 < hi < 20  # the far tail is not on the slider


def test_score_bins_show_the_ok_nok_overlap() -> None:
    rng = np.random.default_rng(1)
    ok, nok = rng.normal(0, 1, 40), np.r_[rng.normal(2, 1, 10), rng.uniform(20, 170, 30)]
    y, s = np.r_[np.zeros(40, bool), np.ones(40, bool)], np.r_[ok, nok]
    edges = D.score_bins(s, y, None, threshold=1.0)
    ok_c, nok_c = D.histogram_counts(y, s, edges)
    assert int(np.count_nonzero(ok_c)) >= 5  # the OK parts spread over several bars
    assert ok_c.sum() == 40 and nok_c.sum() == 40 and nok_c[-1] >= 30  # the tail in the last bar
    assert 8 <= edges.size - 1 <= 60


def test_per_defect_at() -> None:
    rows = D.per_defect_at(Y, S, [None, None, "a", None, "b", "a"], 0.4)
    by = {r["defect type"]: r for r in rows}
    assert by["a"]["images"] == 2 and by["a"]["caught (NOK)"] == 1 and by["a"]["escaped (OK)"] == 1


def test_pr_from_roc_and_pixel_curves_agree() -> None:
    rng = np.random.default_rng(0)
    maps = [rng.random((16, 16)).astype(np.float32) for _ in range(4)]
    masks: list[np.ndarray | None] = [None, None, np.zeros((16, 16), bool), np.zeros((16, 16), bool)]
    for m, amap in zip(masks[2:], maps[2:]):
        m[4:9, 4:9] = True  # type: ignore[index]
        amap[4:9, 4:9] += 0.5
    out = D.pixel_curves(lambda: zip(maps, masks))
    scan = RangeScanner()
    for a in maps:
        scan.update(a)
    acc = PixelAccumulator(scan.binning())
    for a, m in zip(maps, masks):
        acc.update(a, m)
    ref = acc.result()
    assert out["pixel_auroc"] == ref.pixel_auroc and out["aupro"] == ref.aupro
    pr = out["pr"]
    assert pr["recall"][-1] == pytest.approx(1.0) and max(pr["precision"]) == pytest.approx(1.0)
    n_pos = int(sum(m.sum() for m in masks if m is not None))
    derived = D.pr_from_roc(ref.roc, n_pos, 4 * 256 - n_pos)
    assert derived["recall"][-1] == pytest.approx(1.0)
    assert 0 < min(derived["precision"]) <= 1
