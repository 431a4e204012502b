"""Metrics against hand-computed cases and sklearn's exact implementations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from engine.evaluation import metrics as M
from engine.evaluation.pixel_metrics import PixelAccumulator, PixelBinning, RangeScanner

Y_TOY = np.array([0, 0, 1, 0, 1, 1], bool)
S_TOY = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])


def test_image_auroc_tiny_and_ties() -> None:
    assert M.image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # one NOK tied with one OK counts 1/2: (1 + 0.5) / 2
    assert M.image_auroc([0, 0, 1], [0.1, 0.5, 0.5]) == pytest.approx(0.75)
    rng = np.random.default_rng(1)
    y = rng.random(300) < 0.3
    s = np.round(rng.normal(y * 0.8, 1.0), 1)  # many ties
    assert M.image_auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_roc_points_match_sklearn_without_inf() -> None:
    rng = np.random.default_rng(2)
    y = rng.random(80) < 0.5
    s = np.round(rng.normal(y * 1.0, 1.0), 1)
    roc = M.roc_points(y, s)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    assert np.isinf(thr[0])
    np.testing.assert_allclose(roc["fpr"], fpr[1:])
    np.testing.assert_allclose(roc["tpr"], tpr[1:])
    np.testing.assert_allclose(roc["thresholds"], thr[1:])
    # ">=": at each threshold, tpr is the share of NOK scores >= it
    t = roc["thresholds"][5]
    assert roc["tpr"][5] == pytest.approx(np.mean(s[y] >= t))


def test_bootstrap_ci_deterministic_and_contains_estimate() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(200) < 0.4
    s = rng.normal(y * 1.2, 1.0)
    a = M.image_auroc(y, s)
    ci = M.auroc_ci(y, s, n_boot=1000, seed=7)
    assert ci == M.auroc_ci(y, s, n_boot=1000, seed=7)
    assert ci[0] < a < ci[1] and ci[1] - ci[0] < 0.2
    # reference: a plain loop of stratified resamples gives the same distribution
    r = np.random.default_rng(7)
    pos, neg = s[y], s[~y]
    loop = [roc_auc_score(np.r_[np.ones(pos.size), np.zeros(neg.size)],
                          np.r_[r.choice(pos, pos.size), r.choice(neg, neg.size)])
            for _ in range(300)]
    assert abs(np.quantile(loop, 0.025) - ci[0]) < 0.03
    assert abs(np.quantile(loop, 0.975) - ci[1]) < 0.03


def test_f1_max_and_fpr_at_full_recall_toy() -> None:
    f1, thr = M.f1_max(Y_TOY, S_TOY)
    assert f1 == pytest.approx(6 / 7) and thr == pytest.approx(0.3)
    # lowest NOK score 0.3; OK scores >= 0.3: {0.4} of {0.1, 0.2, 0.4}
    assert M.fpr_at_full_recall(Y_TOY, S_TOY) == pytest.approx(1 / 3)
    pr = M.pr_points(Y_TOY, S_TOY)
    assert pr["precision"][0] == 1.0 and pr["recall"][-1] == 1.0


def test_ok_only_threshold_quantile() -> None:
    ok = np.arange(100, dtype=float)
    t = M.ok_only_threshold(ok, 0.01)
    assert t == pytest.approx(98.01)  # linear interpolation between 98 and 99
    assert np.mean(ok >= t) == pytest.approx(0.01)
    assert M.ok_only_threshold([], 0.01) is None


def test_verdicts_and_review_band() -> None:
    s = [0.39, 0.4, 0.5, 0.59, 0.6, 0.7]
    assert list(M.verdicts(s, 0.5)) == ["OK", "OK", "NOK", "NOK", "NOK", "NOK"]
    assert list(M.verdicts(s, 0.5, (0.4, 0.6))) == ["OK", "REVIEW", "REVIEW", "REVIEW",
                                                     "NOK", "NOK"]
    with pytest.raises(M.ThresholdError):
        M.verdicts(s, 0.5, (0.55, 0.6))
    c = M.confusion([0, 0, 1, 1, 1, 0], s, 0.5, (0.4, 0.6))
    assert (c["tn"], c["review_ok"], c["review_nok"], c["tp"], c["fp"]) == (1, 1, 2, 1, 1)
    assert c["escape_rate"] == 0.0


def test_compute_metrics_keys_per_defect_and_json() -> None:
    labels = ["ok", "ok", "nok", "ok", "nok", "nok"]
    types = [None, None, "scratch", None, "burn", "burn"]
    m = M.compute_metrics(labels, S_TOY, types, holdout_scores=[0.1, 0.2, 0.3],
                          input_size=(64, 48), n_boot=200)
    for k in ("image_auroc", "image_auroc_ci95", "pixel_auroc", "aupro", "f1_max",
              "f1_threshold", "fpr_at_full_recall", "per_defect", "roc", "pr", "pixel_roc",
              "ok_only_threshold", "n_ok", "n_nok", "resolution_note"):
        assert k in m
    assert m["n_ok"] == 3 and m["n_nok"] == 3 and m["pixel_auroc"] is None
    assert m["resolution_note"].endswith("64x48") and m["ok_only_source"] == "holdout"
    assert m["per_defect"]["burn"] == {"n": 2, "image_auroc": 1.0,
                                       "recall_at_f1_threshold": 1.0, "mean_score": 0.55}
    assert m["per_defect"]["scratch"]["image_auroc"] == pytest.approx(2 / 3)
    json.dumps(m, allow_nan=False)


def test_no_nok_gives_nulls_not_crash() -> None:
    m = M.compute_metrics(["ok"] * 4, [0.1, 0.2, 0.3, 0.4], n_boot=50)
    for k in ("image_auroc", "image_auroc_ci95", "f1_max", "f1_threshold",
              "fpr_at_full_recall", "roc", "pr", "pixel_auroc", "aupro", "confusion_at_f1"):
        assert m[k] is None, k
    assert m["ok_only_source"] == "test_ok" and m["ok_only_threshold"] is not None
    json.dumps(m, allow_nan=False)
    m = M.compute_metrics(["nok"] * 2, [0.1, 0.2], n_boot=50)
    assert m["image_auroc"] is None and m["f1_max"] == 1.0 and m["ok_only_threshold"] is None


# --- pixel metrics -------------------------------------------------------------------------

def _toy_two_regions(n_half: int = 12) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Image A: region R1 = 2 px at 0.9, region R2 = 1 px at 0.9 + 1 px at 0.0; image B all OK.

    Negatives: 124 pixels, `n_half` of them at 0.5, the rest 0.0.
    """
    a, b = np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32)
    mask = np.zeros((8, 8), bool)
    mask[1, 1:3] = True
    mask[5, 5:7] = True
    a[1, 1:3] = 0.9
    a[5, 5] = 0.9
    b.ravel()[:n_half] = 0.5
    return [a, b], [mask, None]


def _accumulate(maps: list, masks: list, roi: np.ndarray | None = None,
                n_bins: int = 4096) -> "M.PixelMetrics":
    sc = RangeScanner(roi)
    for m in maps:
        sc.update(m)
    acc = PixelAccumulator(sc.binning(n_bins), roi)
    for m, k in zip(maps, masks):
        acc.update(m, k)
    return acc.result()


def test_aupro_and_pixel_auroc_hand_computed() -> None:
    maps, masks = _toy_two_regions()
    r = _accumulate(maps, masks)
    assert r.n_regions == 2 and r.n_images == 2
    # PRO is 0.75 at fpr 0 (R1 full, R2 half) up to fpr1 = 12/124, then rises linearly to
    # 1.0 at fpr 1 (threshold 0.0): interpolate at 0.3.
    f1 = 12 / 124
    pro_03 = 0.75 + 0.25 * (0.3 - f1) / (1 - f1)
    expected = (0.75 * 0.3 + (0.3 - f1) * (pro_03 - 0.75) / 2) / 0.3
    assert r.aupro == pytest.approx(expected, abs=1e-9)
    # pixel AUROC: 3 positives above all 124 negatives, 1 positive tied with 112 negatives
    assert r.pixel_auroc == pytest.approx((3 * 124 + 0.5 * 112) / (4 * 124), abs=1e-9)
    y = np.concatenate([masks[0].ravel(), np.zeros(64, bool)])
    assert r.pixel_auroc == pytest.approx(roc_auc_score(y, np.concatenate(
        [m.ravel() for m in maps])), abs=1e-9)


def test_roi_excludes_pixels() -> None:
    maps, masks = _toy_two_regions()
    roi = np.ones((8, 8), bool)
    roi[5, 5:7] = False  # drop region R2 entirely: R1 is found at fpr 0 -> AUPRO 1
    r = _accumulate(maps, masks, roi)
    assert r.n_regions == 1 and r.aupro == pytest.approx(1.0)
    assert r.pixel_auroc == pytest.approx(1.0)
    roi = np.ones((8, 8), bool)
    roi[0, :] = roi[1, 0] = False  # drops 8 + 1 of the 12 negatives at 0.5 (and part of image A)
    r2 = _accumulate(maps, masks, roi)
    f1 = 3 / 106  # negatives inside ROI: (55 - 4 positives) + 55
    assert r2.aupro > _accumulate(maps, masks).aupro
    pro_03 = 0.75 + 0.25 * (0.3 - f1) / (1 - f1)
    assert r2.aupro == pytest.approx((0.75 * 0.3 + (0.3 - f1) * (pro_03 - 0.75) / 2) / 0.3)


def test_binned_pixel_auroc_matches_sklearn_on_random_maps() -> None:
    rng = np.random.default_rng(5)
    maps, masks, ys = [], [], []
    for i in range(12):
        m = rng.gamma(1.0, 1.0, (64, 64)).astype(np.float16)
        k = None
        if i % 2:
            k = np.zeros((64, 64), bool)
            k[10:30, 20:35] = True
            m[k] += np.float16(1.0)
        m[0, 0] = 60.0  # a hot pixel stretching the range
        maps.append(m)
        masks.append(k)
        ys.append(k.ravel() if k is not None else np.zeros(64 * 64, bool))
    r = _accumulate(maps, masks, n_bins=2048)
    exact = roc_auc_score(np.concatenate(ys), np.concatenate([m.ravel() for m in maps]))
    assert r.pixel_auroc == pytest.approx(exact, abs=1e-3)
    assert 0.0 < r.aupro < 1.0 and r.n_regions == 6
    assert len(r.roc["fpr"]) < 1000 and r.roc["thresholds"] == sorted(r.roc["thresholds"],
                                                                      reverse=True)
    assert r.n_pos == 6 * 300 and r.n_pos + r.n_neg == 12 * 64 * 64
    assert r.pr["recall"] == sorted(r.pr["recall"]) and r.pr["recall"][-1] == 1.0
    assert len(r.pr["precision"]) == len(r.pr["thresholds"]) < 1000
    # the F1 of the best stored PR point is close to the reported pixel F1-max
    p, q = np.array(r.pr["precision"]), np.array(r.pr["recall"])
    assert np.max(2 * p * q / np.maximum(p + q, 1e-12)) == pytest.approx(r.f1_max, abs=0.02)


def test_no_masks_and_constant_maps_give_none() -> None:
    r = _accumulate([np.ones((8, 8), np.float32)] * 3, [None] * 3)
    assert r.pixel_auroc is None and r.aupro is None and r.roc is None
    m = M.compute_metrics(["ok", "nok"], [0.1, 0.9], pixel=r, n_boot=20)
    assert m["pixel_auroc"] is None and m["aupro"] is None and m["image_auroc"] == 1.0


def test_binning_threshold_rule_is_ge() -> None:
    b = PixelBinning.make(0.0, 1.0, np.linspace(0, 1, 1000), n_bins=64)
    v = np.linspace(0, 1, 10001, dtype=np.float32)
    bins = b.bin(v)
    for k in (1, 10, 40, b.n_bins - 1):
        t = b.thresholds[k]
        np.testing.assert_array_equal(bins >= k, v >= np.float32(t))
