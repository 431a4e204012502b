"""Live decision helpers for the Thresholds / Results / Review pages (numpy only, no torch).

Everything here reuses the one verdict rule of `engine.evaluation.metrics` (NOK iff score >= threshold;
review band: OK below lo, REVIEW in [lo, hi), NOK at or above hi), so what the dashboard counts
is what `prefilter-qa predict` will decide.

Histogram click semantics: a bar covers scores in [left edge, right edge); clicking it sets the
threshold to its LEFT edge, so the clicked bar and everything to its right are rejected (NOK).
A box selection sets the threshold to the box's left x.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.evaluation import metrics as M
from engine.evaluation.pixel_metrics import PixelAccumulator, RangeScanner

OUTCOMES = ("TP", "FP", "FN", "TN", "REVIEW")  # gallery filters, in display order
RULES = ("manual", "roc", "histogram", "f1_max", "zero_escape", "ok_only")


def outcomes(y_nok: np.ndarray, scores: np.ndarray, threshold: float,
             review_band: tuple[float, float] | None = None) -> np.ndarray:
    """Per image "TP"/"FP"/"FN"/"TN"/"REVIEW" (NOK is the positive class; FN = escape)."""
    y = np.asarray(y_nok, dtype=bool)
    v = M.verdicts(scores, threshold, review_band)
    return np.where(v == "REVIEW", "REVIEW",
                    np.where(v == "NOK", np.where(y, "TP", "FP"), np.where(y, "FN", "TN")))


def live_counts(y_nok: np.ndarray, scores: np.ndarray, threshold: float,
                review_band: tuple[float, float] | None = None) -> dict[str, float | int | None]:
    """`metrics.confusion` plus class sizes and the share of parts rejected (verdict NOK)."""
    c = M.confusion(y_nok, scores, threshold, review_band)
    y = np.asarray(y_nok, dtype=bool)
    n = int(y.size)
    c["n"], c["n_nok"], c["n_ok"] = n, int(y.sum()), int((~y).sum())
    c["reject_rate"] = (c["tp"] + c["fp"]) / n if n else None
    c["review_count"] = int(c["review_nok"]) + int(c["review_ok"])
    return c


@dataclass(frozen=True)
class Suggestion:
    """A threshold the page offers one click away, with the reason shown next to it."""

    rule: str  # one of RULES
    label: str
    value: float | None
    why: str


def suggestions(y_nok: np.ndarray, scores: np.ndarray, *, target_frr: float,
                ok_reference: np.ndarray | None = None) -> list[Suggestion]:
    """F1-max, zero escapes (the lowest NOK score), OK-only at `target_frr`.

    `ok_reference`: OK scores the OK-only rule is fitted on (the held-out OK training images when
    the evaluation stored them); None uses the OK test images.
    """
    y = np.asarray(y_nok, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    f1, f1_thr = M.f1_max(y, s)
    zero = float(s[y].min()) if y.any() else None
    use_hold = ok_reference is not None and np.size(ok_reference) > 0
    ref = np.asarray(ok_reference, np.float64) if use_hold else s[~y]
    src = "held-out OK training images" if use_hold else "OK test images"
    ok_thr = M.ok_only_threshold(ref, target_frr) if ref.size else None
    return [
        Suggestion("f1_max", "F1-max", f1_thr,
                   f"best F1 = {f1:.3f} on the test images" if f1 is not None else "needs NOK images"),
        Suggestion("zero_escape", "Zero escapes", zero,
                   "highest threshold that still rejects every NOK test image"
                   if zero is not None else "needs NOK images"),
        Suggestion("ok_only", f"OK-only @ {target_frr:.1%} FRR", ok_thr,
                   f"rejects about {target_frr:.1%} of OK parts (quantile of {np.size(ref)} {src})"),
    ]


def n_bins(n: int) -> int:
    """Bars for n scores: about 2 sqrt(n), between 8 and 40 (a few images: wide bars)."""
    return int(np.clip(round(2 * np.sqrt(max(n, 1))), 8, 40))


def histogram_edges(scores: np.ndarray, n_bins: int = 30) -> np.ndarray:
    """(n_bins + 1,) equal-width edges over the score range (a tiny span if all scores tie)."""
    s = np.asarray(scores, dtype=np.float64)
    lo, hi = (float(s.min()), float(s.max())) if s.size else (0.0, 1.0)
    if not hi > lo:
        hi = lo + max(abs(lo), 1.0) * 1e-6
    return np.linspace(lo, hi, int(n_bins) + 1)


def score_bins(scores: np.ndarray, y_nok: np.ndarray, ok_reference: Sequence[float] | None = None,
               threshold: float | None = None, per_spread: int = 10, max_bins: int = 60) -> np.ndarray:
    """Histogram edges whose width comes from the OK scores' spread, not the whole score range.

    NOK scores often reach far beyond the OK ones (a score range of -4 ... 170 with all OK
    parts within 5): equal bins over the range put every OK part into one bar and hide the
    overlap that decides the threshold. Here a bar is 1/`per_spread` of the OK spread (1st-99th
    percentile of `ok_reference`, the held-out OK scores, with the OK test scores when there are
    fewer than 10 of them); the bars cover
    the lowest score up to one spread past the OK scores and the threshold, and the last bar holds
    every higher score (`histogram_counts` clips into it). Few bars for a narrow range."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y_nok, dtype=bool)
    ref = np.asarray(ok_reference if ok_reference is not None else [], np.float64)
    if ref.size < 10:  # a few held-out images say little about the spread: add the OK test scores
        ref = np.concatenate([ref, s[~y]])
    if s.size == 0:
        return histogram_edges(s, 8)
    lo, hi_all = float(s.min()), float(s.max())
    if ref.size >= 2:
        q1, q99 = (float(v) for v in np.quantile(ref, [0.01, 0.99]))
    else:
        q1, q99 = lo, hi_all
    spread = q99 - q1 if q99 > q1 else max(hi_all - lo, 1e-6)
    width = spread / per_spread
    top = max(q99, float(threshold) if threshold is not None else q99) + spread
    hi = min(hi_all, top)  # one OK spread past the OK scores and the threshold; the rest: last bar
    if threshold is not None:
        lo = min(lo, float(threshold))
        hi = max(hi, float(threshold) + width)
    if not hi > lo:
        return histogram_edges(s, n_bins(s.size))
    n = int(np.ceil((hi - lo) / width))
    if n > max_bins or n < 8:  # a very long tail, or a narrow range: keep a readable number of bars
        n = int(np.clip(n, 8, max_bins))
    return np.linspace(lo, hi, n + 1)


def histogram_counts(y_nok: np.ndarray, scores: np.ndarray, edges: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(OK counts, NOK counts) per bar; bars are [left, right), the last one closed; scores
    beyond the edges count in the outer bars (see `score_bins`)."""
    y = np.asarray(y_nok, dtype=bool)
    s = np.clip(np.asarray(scores, dtype=np.float64), edges[0], edges[-1])
    return np.histogram(s[~y], edges)[0], np.histogram(s[y], edges)[0]


def bar_threshold(edges: np.ndarray, bar_index: int) -> float:
    """Threshold for a clicked bar: its left edge (the bar and everything right of it -> NOK)."""
    i = int(np.clip(bar_index, 0, len(edges) - 2))
    return float(edges[i])


def box_threshold(xs: Sequence[float]) -> float:
    """Threshold for a box selection on the histogram: the box's left x."""
    return float(min(xs))


def roc_threshold(thresholds: Sequence[float], point_index: int) -> float:
    """The threshold of a clicked ROC/PR point (index into the curve's own threshold array)."""
    if not 0 <= int(point_index) < len(thresholds):
        raise IndexError(f"point {point_index} is not on a curve of {len(thresholds)} points")
    return float(thresholds[int(point_index)])


def operating_point(y_nok: np.ndarray, scores: np.ndarray, threshold: float
                    ) -> tuple[float, float] | None:
    """(FPR, TPR) of the binary rule at `threshold`, for the marker on the ROC curve."""
    y = np.asarray(y_nok, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.all() or not y.any():
        return None
    return float(np.mean(s[~y] >= threshold)), float(np.mean(s[y] >= threshold))


BAND_OK_QUANTILE = 0.95  # REVIEW from: about 5 % of good parts reach it
BAND_NOK_QUANTILE = 0.10  # NOK from: about 90 % of the known defects are at or above it


@dataclass(frozen=True)
class BandSuggestion:
    """A starting review band and the sentence that says which number decides what."""

    low: float
    high: float
    why: str


def suggest_band(threshold: float, y_nok: np.ndarray, scores: np.ndarray,
                 ok_reference: np.ndarray | None = None) -> BandSuggestion:
    """A review band from the OK and NOK scores, around the threshold.

    REVIEW from the 95th percentile of the OK reference scores (the held-out OK training images,
    else the OK test images): parts below it look like good parts. NOK from the 10th percentile
    of the NOK test scores: most known defects are at or above it. Each end is moved to the
    threshold if it would leave it outside the band. (A band of +/- a share of the whole score
    range sent every OK part to review when NOK scores reach far.)"""
    y = np.asarray(y_nok, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    t = float(threshold)
    hold = ok_reference is not None and np.size(ok_reference) > 0
    ok = np.asarray(ok_reference, np.float64) if hold else s[~y]
    src = f"{ok.size} held-out OK" if hold else f"{ok.size} OK test"
    lo = float(np.quantile(ok, BAND_OK_QUANTILE)) if ok.size else t
    hi = float(np.quantile(s[y], BAND_NOK_QUANTILE)) if y.any() else t
    lo, hi = min(lo, t), max(hi, t)
    why = (f"REVIEW from {lo:.4g}: the {BAND_OK_QUANTILE:.0%} point of the {src} scores (about "
           f"{1 - BAND_OK_QUANTILE:.0%} of good parts reach it); NOK from {hi:.4g}: the "
           f"{BAND_NOK_QUANTILE:.0%} point of the {int(y.sum())} NOK test scores (about "
           f"{1 - BAND_NOK_QUANTILE:.0%} of known defects are at or above it); either end moves to the "
           "threshold if it would leave it outside the band.")
    return BandSuggestion(lo, hi, why)


def slider_span(y_nok: np.ndarray, scores: np.ndarray, ok_reference: np.ndarray | None,
                marks: Sequence[float | None] = ()) -> tuple[float, float]:
    """Range of the threshold slider: the scores that matter (the histogram's bars, see
    `score_bins`) and the given marks (active threshold, suggestions), not a far NOK tail."""
    edges = score_bins(scores, y_nok, ok_reference)
    vals = [float(edges[0]), float(edges[-1])] + [float(m) for m in marks if m is not None and np.isfinite(m)]
    lo, hi = min(vals), max(vals)
    pad = 0.03 * (hi - lo if hi > lo else 1.0)
    return lo - pad, hi + pad


def band_error(threshold: float, band: tuple[float, float] | None) -> str | None:
    """Why a review band cannot be used with this threshold, or None."""
    if band is None:
        return None
    lo, hi = band
    if lo > hi:
        return f"the band's lower end {lo:.4g} is above its upper end {hi:.4g}"
    if not lo <= threshold <= hi:
        return f"the review band [{lo:.4g}, {hi:.4g}] must contain the threshold {threshold:.4g}"
    return None


def per_defect_at(y_nok: np.ndarray, scores: np.ndarray, defect_types: Sequence[str | None],
                  threshold: float, review_band: tuple[float, float] | None = None
                  ) -> list[dict[str, object]]:
    """Per defect type: n, AUROC against all OK images, caught / in review / escaped at the
    threshold (the per-type table of the Results page)."""
    y = np.asarray(y_nok, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    types = np.array([t if t else "unspecified" for t in defect_types], dtype=object)
    v = M.verdicts(s, threshold, review_band)
    stats = M.per_defect(y, s, list(defect_types), threshold) if y.any() else {}
    rows: list[dict[str, object]] = []
    for t, st in stats.items():
        sel = y & (types == t)
        rows.append({"defect type": t, "images": st["n"], "image AUROC": st["image_auroc"],
                     "caught (NOK)": int(np.sum(v[sel] == "NOK")),
                     "review": int(np.sum(v[sel] == "REVIEW")),
                     "escaped (OK)": int(np.sum(v[sel] == "OK")),
                     "mean score": st["mean_score"]})
    return rows


def pr_from_roc(roc: dict[str, list[float]], n_pos: int, n_neg: int) -> dict[str, list[float]] | None:
    """Precision/recall from ROC points and the class sizes (pixel PR from stored pixel ROC)."""
    if not roc or n_pos <= 0:
        return None
    fpr, tpr = np.asarray(roc["fpr"], np.float64), np.asarray(roc["tpr"], np.float64)
    tp, fp = tpr * n_pos, fpr * n_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
    return {"precision": prec.tolist(), "recall": tpr.tolist(),
            "thresholds": list(roc.get("thresholds", []))}


def image_metrics(labels_nok: np.ndarray, scores: np.ndarray,
                  defect_types: Sequence[str | None], n_boot: int = 1000) -> dict:
    """Image-level metrics of a subset (run comparison on common test images)."""
    lab = ["nok" if v else "ok" for v in np.asarray(labels_nok, dtype=bool)]
    m = M.compute_metrics(lab, np.asarray(scores, np.float64), list(defect_types), n_boot=n_boot)
    keep = ("image_auroc", "image_auroc_ci95", "f1_max", "f1_threshold", "fpr_at_full_recall",
            "roc", "pr", "n_ok", "n_nok", "per_defect")
    return {k: m[k] for k in keep}


def pixel_curves(load_pairs: Callable[[], Iterable[tuple[np.ndarray, np.ndarray | None]]],
                 roi: np.ndarray | None = None) -> dict | None:
    """Pixel AUROC, AUPRO, ROC and precision-recall over (map, mask) pairs, binned exactly as
    the evaluation does (engine.evaluation.pixel_metrics); `load_pairs()` is called twice (range, counts)
    so maps stream from disk instead of sitting in memory. Masks must match their map's shape;
    None = all negative. None if there is no positive or no negative pixel."""
    scan = RangeScanner(roi)
    for amap, _ in load_pairs():
        scan.update(amap)
    acc = PixelAccumulator(scan.binning(), roi)
    for amap, mask in load_pairs():
        acc.update(amap, mask)
    res = acc.result()
    if res.pixel_auroc is None:
        return None
    tp, fp = np.cumsum(acc.pos[::-1]), np.cumsum(acc.neg[::-1])  # (K,) highest threshold first
    keep = tp + fp > 0
    thr = acc.binning.thresholds[::-1][keep]
    prec, rec = tp[keep] / (tp[keep] + fp[keep]), tp[keep] / max(int(acc.pos.sum()), 1)
    step = max(1, prec.size // 400)
    return {"pixel_auroc": res.pixel_auroc, "aupro": res.aupro, "roc": res.roc,
            "pr": {"precision": prec[::step].tolist(), "recall": rec[::step].tolist(),
                   "thresholds": thr[::step].tolist()},
            "pixel_f1_max": res.f1_max, "pixel_f1_threshold": res.f1_threshold,
            "n_images": res.n_images, "n_regions": res.n_regions}


DRIFT_SHARE = 0.5  # a line median moved by more than this share of the OK spread is a warning


def score_drift(reference: np.ndarray, current: np.ndarray, share: float = DRIFT_SHARE) -> dict[str, Any] | None:
    """Has the line's score distribution moved away from the evaluation's OK scores?

    Spread = the reference's 5th..95th percentile range; drift when the median of `current` is
    more than `share` of it away from the reference median (None without enough scores). Medians,
    so the few NOK parts on a line do not move it.
    """
    reference, current = np.asarray(reference, np.float64), np.asarray(current, np.float64)
    if reference.size < 2 or current.size == 0:
        return None
    lo, hi = np.percentile(reference, [5.0, 95.0])
    spread = float(max(hi - lo, 1e-12))
    shift = float(np.median(current) - np.median(reference))
    return {"reference_median": float(np.median(reference)), "current_median": float(np.median(current)),
            "spread": spread, "shift_of_spread": shift / spread, "share": share, "drift": abs(shift) > share * spread,
            "n_reference": int(reference.size), "n_current": int(current.size)}


def chance_warning(metrics: dict[str, Any] | None) -> str | None:
    """A plain sentence when the image AUROC's 95 % interval includes 0.5 (the model ranks defects
    no better than a coin would on these images), else None."""
    ci = (metrics or {}).get("image_auroc_ci95")
    if not ci or ci[0] is None or ci[1] is None or not ci[0] <= 0.5 <= ci[1]:
        return None
    return (f"Its image AUROC interval [{ci[0]:.2f}, {ci[1]:.2f}] includes 0.5: on these images this model does "
            "no better than chance. Do not set a threshold on it; try the other model family or more OK images.")
