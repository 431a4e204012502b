"""Pixel AUROC and AUPRO on binned histograms, fed image by image (numpy + cv2, no torch).

Why binned: sorting every pixel of hundreds of maps costs seconds and all maps in RAM; counting
pixels per threshold bin is one `np.bincount` per map and needs only a few histograms.

Two passes (evaluation keeps maps on disk as float16, never all in RAM):
1. `RangeScanner.update(map)` while maps are produced: global min/max and a pixel sample.
2. `PixelBinning.make(...)` from it, then `PixelAccumulator.update(map, mask)` per map.

Binning: a fine linear grid of 2**20 cells over [vmin, vmax] (float32 arithmetic, values
outside clipped to the end cells), merged through a lookup table into <= n_bins coarse bins
whose lower edges are half linear over the range and half quantiles of the pixel sample (so a
few hot pixels stretching the range do not squeeze all typical values into one bin). Coarse
edges lie on the fine grid, so "pixel in bin >= k" is exactly "value >= thresholds[k]" (up to
float32 rounding): the same ">=" rule as image verdicts. Pixels in one bin count as ties
(1/2 in AUROC), i.e. the metric is exact for the map quantised to the bins.

AUPRO (anomalib's definition): regions = 8-connected components of each GT mask (inside the
ROI); PRO(t) = mean over all regions of all images of the region's share of pixels >= t;
FPR(t) over all negative pixels (inside the ROI) of all images; area under PRO vs FPR up to
FPR 0.3 (end point linearly interpolated), divided by 0.3. Pixels outside the ROI are ignored
everywhere; a map without a mask counts as all-negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

N_FINE = 1 << 20  # fine cells over [vmin, vmax]; lookup table maps them to coarse bins
AUPRO_FPR_LIMIT = 0.3  # anomalib's default integration limit


class RangeScanner:
    """Pass 1: min/max and a seeded pixel sample of every map (inside the ROI)."""

    def __init__(self, roi: np.ndarray | None = None, per_map: int = 2048, seed: int = 0) -> None:
        self.roi = None if roi is None else np.asarray(roi, dtype=bool)
        self.per_map = per_map
        self._rng = np.random.default_rng(seed)
        self._samples: list[np.ndarray] = []
        self.vmin, self.vmax = np.inf, -np.inf
        self.n_maps = 0

    def update(self, amap: np.ndarray) -> None:
        v = amap[self.roi] if self.roi is not None else np.ravel(amap)  # (N,)
        v = v[np.isfinite(v)]
        self.n_maps += 1
        if v.size == 0:
            return
        self.vmin = min(self.vmin, float(v.min()))
        self.vmax = max(self.vmax, float(v.max()))
        idx = self._rng.integers(0, v.size, size=min(self.per_map, v.size))
        self._samples.append(v[idx].astype(np.float32))

    @property
    def sample(self) -> np.ndarray:
        return np.concatenate(self._samples) if self._samples else np.zeros(0, np.float32)

    def quantile(self, q: float) -> float | None:
        """Approximate pixel quantile (from the sample); None if no pixel was seen."""
        s = self.sample
        return float(np.quantile(s, q)) if s.size else None

    def binning(self, n_bins: int = 4096) -> "PixelBinning":
        if not np.isfinite(self.vmin):
            return PixelBinning.make(0.0, 1.0, None, n_bins)
        return PixelBinning.make(self.vmin, self.vmax, self.sample, n_bins)


@dataclass(frozen=True)
class PixelBinning:
    """Value -> bin index; `thresholds[k]` is the lower edge of bin k (ascending)."""

    vmin: float
    scale: float  # fine cells per unit of map value
    lut: np.ndarray  # (N_FINE,) int16/int32: fine cell -> coarse bin
    thresholds: np.ndarray  # (K,) float64

    @property
    def n_bins(self) -> int:
        return int(self.thresholds.size)

    @classmethod
    def make(cls, vmin: float, vmax: float, sample: np.ndarray | None = None,
             n_bins: int = 4096) -> "PixelBinning":
        if not vmax > vmin:  # constant maps: one meaningful bin
            vmax = vmin + max(abs(vmin), 1.0) * 1e-6
        scale = N_FINE / (vmax - vmin)
        n_lin = n_bins if sample is None or sample.size == 0 else n_bins // 2
        cells = [np.floor(np.linspace(0, N_FINE, n_lin, endpoint=False))]
        if n_lin < n_bins:
            q = np.quantile(sample.astype(np.float64), np.linspace(0, 1, n_bins - n_lin))
            cells.append(np.floor((q - vmin) * scale))
        edges = np.unique(np.clip(np.concatenate(cells), 0, N_FINE - 1)).astype(np.int64)
        edges[0] = 0
        dtype = np.int16 if edges.size < 2**15 else np.int32
        lut = (np.searchsorted(edges, np.arange(N_FINE), side="right") - 1).astype(dtype)
        return cls(float(vmin), float(scale), lut, vmin + edges / scale)

    def bin(self, amap: np.ndarray) -> np.ndarray:
        """Coarse bin of every value, same shape; NaN goes to the lowest bin."""
        f = np.subtract(amap, np.float32(self.vmin), dtype=np.float32)
        f *= np.float32(self.scale)
        np.clip(f, 0, N_FINE - 1, out=f)
        return np.take(self.lut, f.astype(np.int32), mode="clip")


@dataclass(frozen=True)
class PixelMetrics:
    """Result of a `PixelAccumulator`; metrics are None where no positive/negative pixel."""

    pixel_auroc: float | None
    aupro: float | None
    f1_max: float | None
    f1_threshold: float | None
    roc: dict[str, list[float]] | None  # downsampled {fpr, tpr, thresholds}, thresholds descending
    n_images: int
    n_regions: int
    n_bins: int
    pr: dict[str, list[float]] | None = None  # downsampled {precision, recall, thresholds}
    n_pos: int = 0  # positive (defect) pixels counted
    n_neg: int = 0  # negative pixels counted


def _rev_cumsum(h: np.ndarray) -> np.ndarray:
    """(K,) counts per bin -> (K,) counts at or above each bin."""
    return np.cumsum(h[::-1])[::-1]


def _area_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoid area of y(x) (x ascending) from 0 to `limit`, end point interpolated."""
    i = int(np.searchsorted(x, limit, side="right"))
    if i < x.size and x[i] > x[i - 1]:
        y_end = y[i - 1] + (y[i] - y[i - 1]) * (limit - x[i - 1]) / (x[i] - x[i - 1])
        x, y = np.r_[x[:i], limit], np.r_[y[:i], y_end]
    else:
        x, y = x[:i], y[:i]
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _downsample(fpr: np.ndarray, tpr: np.ndarray, cells: int = 200) -> np.ndarray:
    """Indices of one point per (fpr, tpr) grid cell, in curve order: a few hundred points."""
    code = np.floor(fpr * cells) * (cells + 1) + np.floor(tpr * cells)
    _, first = np.unique(code, return_index=True)
    return np.unique(np.r_[0, first, fpr.size - 1])


class PixelAccumulator:
    """Pass 2: per-bin counts of positive/negative pixels and per-region overlap."""

    def __init__(self, binning: PixelBinning, roi: np.ndarray | None = None) -> None:
        self.binning = binning
        self.roi = None if roi is None else np.asarray(roi, dtype=bool)
        k = binning.n_bins
        self.pos = np.zeros(k, np.int64)  # (K,) positive pixels per bin
        self.neg = np.zeros(k, np.int64)  # (K,) negative pixels per bin
        self.pro = np.zeros(k, np.float64)  # (K,) sum over regions of region share per bin
        self.n_regions = 0
        self.n_images = 0

    def update(self, amap: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Add one (H, W) map with its (H, W) bool mask (None = all negative)."""
        if self.roi is not None and self.roi.shape != amap.shape:
            raise ValueError(f"ROI is {self.roi.shape} but the map is {amap.shape}")
        if mask is not None and mask.shape != amap.shape:
            raise ValueError(f"mask is {mask.shape} but the map is {amap.shape}")
        k = self.binning.n_bins
        b = self.binning.bin(amap)  # (H, W) bin index
        self.n_images += 1
        if mask is None or not mask.any():
            vals = b[self.roi] if self.roi is not None else b.ravel()
            self.neg += np.bincount(vals, minlength=k)
            return
        m = mask.astype(bool) if self.roi is None else (mask.astype(bool) & self.roi)
        neg = ~m if self.roi is None else (~m & self.roi)
        self.neg += np.bincount(b[neg], minlength=k)
        if not m.any():
            return
        pos_bins = b[m]
        self.pos += np.bincount(pos_bins, minlength=k)
        n, lab = cv2.connectedComponents(m.view(np.uint8), connectivity=8)  # lab (H, W) int32
        sizes = np.bincount(lab[m], minlength=n)  # (n,) region sizes (0 = background)
        weight = 1.0 / np.maximum(sizes, 1)
        self.pro += np.bincount(pos_bins, weights=weight[lab[m]], minlength=k)
        self.n_regions += n - 1

    def result(self, fpr_limit: float = AUPRO_FPR_LIMIT) -> PixelMetrics:
        n_pos, n_neg = int(self.pos.sum()), int(self.neg.sum())
        thr = self.binning.thresholds
        if n_pos == 0 or n_neg == 0:
            return PixelMetrics(None, None, None, None, None, self.n_images, self.n_regions,
                                self.binning.n_bins, None, n_pos, n_neg)
        tp, fp = _rev_cumsum(self.pos), _rev_cumsum(self.neg)  # (K,) at threshold k
        # curve from the highest threshold down, with (0, 0) in front (threshold above all)
        fpr = np.r_[0.0, fp[::-1] / n_neg]
        tpr = np.r_[0.0, tp[::-1] / n_pos]
        auroc = min(1.0, float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0)))
        aupro = None
        if self.n_regions:
            pro = np.r_[0.0, _rev_cumsum(self.pro)[::-1] / self.n_regions]
            aupro = min(1.0, _area_to(fpr, pro, fpr_limit) / fpr_limit)  # rounding
        f1 = (2 * tp / (tp + fp + n_pos))[::-1]  # highest threshold first: argmax keeps it on ties
        i = int(np.argmax(f1))
        keep = _downsample(fpr[1:], tpr[1:])
        roc = {"fpr": fpr[1:][keep].tolist(), "tpr": tpr[1:][keep].tolist(),
               "thresholds": thr[::-1][keep].tolist()}
        tp_d, fp_d = tp[::-1], fp[::-1]  # highest threshold first
        hit = np.flatnonzero(tp_d + fp_d > 0)
        prec, rec = tp_d[hit] / (tp_d[hit] + fp_d[hit]), tp_d[hit] / n_pos
        keep = hit[_downsample(rec, prec)] if hit.size else hit
        pr = {"precision": (tp_d[keep] / (tp_d[keep] + fp_d[keep])).tolist(),
              "recall": (tp_d[keep] / n_pos).tolist(), "thresholds": thr[::-1][keep].tolist()}
        return PixelMetrics(auroc, aupro, float(f1[i]), float(thr[::-1][i]), roc,
                            self.n_images, self.n_regions, self.binning.n_bins, pr, n_pos, n_neg)
