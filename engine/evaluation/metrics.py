"""Image-level inspection metrics and the one decision rule (numpy only, vectorised).

Conventions used everywhere (metrics, thresholds, `predict`):
- Labels: NOK is the positive class. Scores: higher = more anomalous.
- Decision rule: verdict NOK iff score >= threshold (">="; a threshold equal to a score
  rejects that image). ROC/PR points are taken at every distinct score as threshold.
- Review band [lo, hi] (lo <= threshold <= hi): OK if score < lo, REVIEW if lo <= score < hi,
  NOK if score >= hi. The band therefore never turns a binary OK into NOK or vice versa; it only
  sends images near the threshold to a person.
Pixel metrics (binned, streaming) live in `engine.evaluation.pixel_metrics` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.config import default
from engine.errors import UserError
from engine.evaluation.pixel_metrics import PixelAccumulator, PixelBinning, PixelMetrics, RangeScanner  # noqa: F401

FPR_LIMIT_NOTE = "AUPRO integrated to FPR 0.3, normalised by 0.3 (anomalib)"


class ThresholdError(UserError, ValueError):
    """A review band that does not contain the threshold, or lo > hi."""


def _as_arrays(y_nok: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_nok, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{int((~np.isfinite(s)).sum())} scores are NaN or infinite")
    return y, s


def _auc_from_counts(cp: np.ndarray, cn: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUROC from per-distinct-score counts (..., K), scores ascending; ties = 1/2."""
    below = np.cumsum(cn, axis=-1) - cn  # negatives strictly below each distinct score
    num = (cp * (below + 0.5 * cn)).sum(axis=-1)
    return num / (cp.sum(axis=-1) * cn.sum(axis=-1))


def image_auroc(y_nok: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray
                ) -> float | None:
    """AUROC (probability a NOK image outscores an OK one, ties 1/2); None without both classes."""
    y, s = _as_arrays(y_nok, scores)
    if y.all() or not y.any():
        return None
    _, inv = np.unique(s, return_inverse=True)
    k = int(inv.max()) + 1
    return float(_auc_from_counts(np.bincount(inv[y], minlength=k),
                                  np.bincount(inv[~y], minlength=k)))


def auroc_ci(y_nok: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray,
             n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> list[float] | None:
    """Percentile bootstrap interval of the AUROC, stratified (class sizes kept), seeded.

    All resamples at once: draw indices (B, n_pos) and (B, n_neg), count them per distinct
    score with one offset bincount each, then the Mann-Whitney sum per row.
    """
    y, s = _as_arrays(y_nok, scores)
    if y.all() or not y.any():
        return None
    _, inv = np.unique(s, return_inverse=True)
    k = int(inv.max()) + 1
    rng = np.random.default_rng(seed)
    offs = (np.arange(n_boot) * k)[:, None]  # (B, 1)
    counts = []
    for cls in (inv[y], inv[~y]):
        draw = cls[rng.integers(0, cls.size, size=(n_boot, cls.size))]  # (B, n_cls)
        counts.append(np.bincount((draw + offs).ravel(), minlength=n_boot * k).reshape(n_boot, k))
    aucs = _auc_from_counts(counts[0], counts[1])  # (B,)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(aucs, [a, 1.0 - a])
    return [float(lo), float(hi)]


def _curve_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At each distinct score t (descending): #NOK >= t, #OK >= t, t."""
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]  # end of each tie group
    tps = np.cumsum(y_sorted)[last]
    fps = (last + 1) - tps
    return tps.astype(np.float64), fps.astype(np.float64), s_sorted[last]


def roc_points(y_nok: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray
               ) -> dict[str, list[float]] | None:
    """ROC at every distinct score as threshold (descending; no leading inf point)."""
    y, s = _as_arrays(y_nok, scores)
    if y.all() or not y.any():
        return None
    tps, fps, thr = _curve_counts(y, s)
    return {"fpr": (fps / fps[-1]).tolist(), "tpr": (tps / tps[-1]).tolist(),
            "thresholds": thr.tolist()}


def pr_points(y_nok: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray
              ) -> dict[str, list[float]] | None:
    """Precision/recall at every distinct score as threshold (descending thresholds)."""
    y, s = _as_arrays(y_nok, scores)
    if not y.any():
        return None
    tps, fps, thr = _curve_counts(y, s)
    return {"precision": (tps / (tps + fps)).tolist(), "recall": (tps / tps[-1]).tolist(),
            "thresholds": thr.tolist()}


def f1_max(y_nok: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray
           ) -> tuple[float, float] | tuple[None, None]:
    """Best F1 over thresholds and that threshold (the highest one on ties); NOK iff >= it."""
    y, s = _as_arrays(y_nok, scores)
    if not y.any():
        return None, None
    tps, fps, thr = _curve_counts(y, s)
    f1 = 2 * tps / (tps + fps + tps[-1])  # = 2PR/(P+R)
    i = int(np.argmax(f1))
    return float(f1[i]), float(thr[i])


def fpr_at_full_recall(y_nok: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray
                       ) -> float | None:
    """False-reject rate at zero escapes: threshold = lowest NOK score, FRR = share OK >= it."""
    y, s = _as_arrays(y_nok, scores)
    if y.all() or not y.any():
        return None
    return float(np.mean(s[~y] >= s[y].min()))


def ok_only_threshold(ok_scores: Sequence[float] | np.ndarray, target_frr: float
                      ) -> float | None:
    """Threshold that rejects about `target_frr` of OK parts, from OK scores only.

    The (1 - target_frr) quantile with linear interpolation between order statistics
    (numpy's default, "type 7"). With n scores, the share of them >= the threshold is at most
    ceil(n * target_frr) / n; a small holdout cannot resolve a small target (n=20 -> >= 5%).
    """
    s = np.asarray(ok_scores, dtype=np.float64).ravel()
    if s.size == 0:
        return None
    if not 0.0 <= target_frr <= 1.0:
        raise ThresholdError(f"target false-reject rate {target_frr} is not in [0, 1]")
    return float(np.quantile(s, 1.0 - target_frr, method="linear"))


def verdicts(scores: Sequence[float] | np.ndarray, threshold: float,
             review_band: tuple[float, float] | None = None) -> np.ndarray:
    """"OK"/"REVIEW"/"NOK" per score by the rule in the module docstring."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    if review_band is None:
        return np.where(s >= threshold, "NOK", "OK")
    lo, hi = float(review_band[0]), float(review_band[1])
    if not lo <= threshold <= hi:
        raise ThresholdError(f"review band [{lo}, {hi}] must contain the threshold {threshold}")
    return np.where(s >= hi, "NOK", np.where(s < lo, "OK", "REVIEW"))


def confusion(y_nok: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray,
              threshold: float, review_band: tuple[float, float] | None = None
              ) -> dict[str, float | int | None]:
    """Counts by true class x verdict; fn = escapes (NOK called OK), fp = false rejects."""
    y, s = _as_arrays(y_nok, scores)
    v = verdicts(s, threshold, review_band)
    c = {"tp": int(np.sum(y & (v == "NOK"))), "fn": int(np.sum(y & (v == "OK"))),
         "fp": int(np.sum(~y & (v == "NOK"))), "tn": int(np.sum(~y & (v == "OK"))),
         "review_nok": int(np.sum(y & (v == "REVIEW"))),
         "review_ok": int(np.sum(~y & (v == "REVIEW")))}
    n_nok, n_ok = int(y.sum()), int((~y).sum())
    c["escape_rate"] = c["fn"] / n_nok if n_nok else None
    c["false_reject_rate"] = c["fp"] / n_ok if n_ok else None
    c["review_rate"] = (c["review_nok"] + c["review_ok"]) / y.size if y.size else None
    return c


def per_defect(y_nok: np.ndarray, scores: np.ndarray, defect_types: Sequence[str | None],
               threshold: float | None) -> dict[str, dict]:
    """Each defect type against all OK images; untyped NOK images go to "unspecified"."""
    y, s = _as_arrays(y_nok, scores)
    types = np.array([t if t else "unspecified" for t in defect_types], dtype=object)
    ok = s[~y]
    out: dict[str, dict] = {}
    for t in sorted(set(types[y])):
        sel = s[y & (types == t)]
        yy = np.r_[np.ones(sel.size, bool), np.zeros(ok.size, bool)]
        out[str(t)] = {
            "n": int(sel.size),
            "image_auroc": image_auroc(yy, np.r_[sel, ok]),
            "recall_at_f1_threshold": (float(np.mean(sel >= threshold))
                                       if threshold is not None else None),
            "mean_score": float(sel.mean())}
    return out


def compute_metrics(labels: Sequence[str], scores: Sequence[float],
                    defect_types: Sequence[str | None] | None = None,
                    holdout_scores: Sequence[float] = (), target_frr: float = default("target_frr"),
                    pixel: PixelMetrics | None = None,
                    input_size: tuple[int, int] | None = None,
                    n_boot: int = 1000, seed: int = 0) -> dict:
    """Every metric of an evaluation (docs/ARCHITECTURE.md "Metrics"), JSON-ready; missing ones are None.

    `labels` are "ok"/"nok"; `input_size` is (W, H) of the model input, where maps and masks
    were compared. The OK-only threshold uses `holdout_scores`, or the OK test scores if no
    holdout was given (then `ok_only_source` says so).
    """
    lab = [str(x).lower() for x in labels]
    bad = sorted({x for x in lab if x not in ("ok", "nok")})
    if bad:
        raise ValueError(f"labels must be 'ok' or 'nok', got {bad}")
    y, s = _as_arrays(np.array([x == "nok" for x in lab], dtype=bool), scores)
    f1, f1_thr = f1_max(y, s)
    hold = np.asarray(holdout_scores, dtype=np.float64).ravel()
    ok_src = "holdout" if hold.size else ("test_ok" if (~y).any() else None)
    ok_thr = ok_only_threshold(hold if hold.size else s[~y], target_frr)
    typed = defect_types is not None and any(t for t, nok in zip(defect_types, y) if nok)
    out: dict = {
        "image_auroc": image_auroc(y, s),
        "image_auroc_ci95": auroc_ci(y, s, n_boot=n_boot, seed=seed),
        "pixel_auroc": pixel.pixel_auroc if pixel else None,
        "aupro": pixel.aupro if pixel else None,
        "f1_max": f1, "f1_threshold": f1_thr,
        "fpr_at_full_recall": fpr_at_full_recall(y, s),
        "per_defect": per_defect(y, s, defect_types, f1_thr) if typed else {},
        "roc": roc_points(y, s), "pr": pr_points(y, s),
        "pixel_roc": pixel.roc if pixel else None,
        "pixel_f1_max": pixel.f1_max if pixel else None,
        "pixel_f1_threshold": pixel.f1_threshold if pixel else None,
        "ok_only_threshold": ok_thr, "ok_only_source": ok_src, "target_frr": target_frr,
        "confusion_at_f1": confusion(y, s, f1_thr) if f1_thr is not None else None,
        "n_ok": int((~y).sum()), "n_nok": int(y.sum()), "n_holdout": int(hold.size),
        "aupro_note": FPR_LIMIT_NOTE,
        "resolution_note": (f"maps and masks compared at model input resolution "
                            f"{input_size[0]}x{input_size[1]}" if input_size else
                            "maps and masks compared at model input resolution"),
    }
    if pixel is not None:
        out["pixel_n_images"] = pixel.n_images
        out["pixel_n_regions"] = pixel.n_regions
        out["pixel_bins"] = pixel.n_bins
        out["pixel_pr"] = pixel.pr
        out["pixel_n_pos"] = pixel.n_pos
        out["pixel_n_neg"] = pixel.n_neg
    return out
