"""Heatmap display helpers (numpy + cv2 only: the dashboard imports this, so no torch).

Heatmaps are stored as float16 `.npy` at model input resolution; these functions colour them
with a fixed value range (the evaluation's `map_range`, so colours mean the same across
images) and map them back onto the original pixel grid for display. The colouring and the
mapping back are the line scorer's own (`prefilter_qa_line.heatmap`, installed with the app), so
the dashboard and the line draw the same picture.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np
from prefilter_qa_line.heatmap import colorize, to_original_grid


def overlay(image: np.ndarray, amap: np.ndarray, vmin: float, vmax: float,
            alpha: float = 0.45) -> np.ndarray:
    """Blend the coloured map over an RGB image; the map is resized to the image if needed."""
    img = _rgb(image)
    heat = colorize(to_original_grid(amap, img.shape[:2]), vmin, vmax)
    return cv2.addWeighted(img, 1.0 - alpha, heat, alpha, 0.0)


def mask_overlay(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (255, 0, 0),
                 alpha: float = 0.5, outline: bool = True) -> np.ndarray:
    """Tint mask pixels with `color` (RGB) and draw their outline, for GT/prediction review."""
    img = _rgb(image).copy()
    m = np.asarray(mask, dtype=bool)
    if m.shape != img.shape[:2]:
        m = cv2.resize(m.view(np.uint8), (img.shape[1], img.shape[0]),
                       interpolation=cv2.INTER_NEAREST).astype(bool)
    col = np.array(color, dtype=np.float32)
    img[m] = np.round((1.0 - alpha) * img[m] + alpha * col).astype(np.uint8)
    if outline and m.any():
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(img, contours, -1, tuple(int(c) for c in color), 1)
    return img


def predicted_mask(amap: np.ndarray, pixel_threshold: float) -> np.ndarray:
    """(H, W) bool: pixels >= the threshold (the same ">=" rule as image verdicts)."""
    return np.asarray(amap, dtype=np.float32) >= np.float32(pixel_threshold)


SCORE_MAP_SUFFIX = ".score.npy"


def score_map_rel(heatmap: str) -> str:
    """Where the score's own map is stored next to a heatmap (`heatmaps/7.npy` ->
    `heatmaps/7.score.npy`): written only when the model's score does not come from its heatmap."""
    return heatmap[:-4] + SCORE_MAP_SUFFIX if heatmap.endswith(".npy") else heatmap + SCORE_MAP_SUFFIX


def score_peak(amap: np.ndarray, border_margin: int = 0) -> tuple[int, int, float]:
    """(row, col, value) of the map's maximum, away from the border margin the score ignores
    (a map at input size; the ROI is already zero outside). Where the score was found."""
    a = np.asarray(amap, dtype=np.float32)
    b = int(border_margin)
    inner = a[b:a.shape[0] - b, b:a.shape[1] - b] if b > 0 and min(a.shape) > 2 * b else a
    off = b if inner is not a else 0
    flat = np.nan_to_num(inner, nan=-np.inf)
    r, c = np.unravel_index(int(np.argmax(flat)), flat.shape)
    return int(r) + off, int(c) + off, float(inner[r, c])


def mark_peak(image: np.ndarray, row: float, col: float, color: tuple[int, int, int] = (255, 255, 255)
              ) -> np.ndarray:
    """A ring and cross-hair at (row, col) of an RGB image (coordinates on that image's grid)."""
    img = _rgb(image).copy()
    h, w = img.shape[:2]
    r = max(4, round(0.035 * max(h, w)))
    t = max(1, round(r / 6))
    center = (int(round(col)), int(round(row)))
    cv2.circle(img, center, r, (0, 0, 0), t + 2)
    cv2.circle(img, center, r, color, t)
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        cv2.line(img, (center[0] + dx * r, center[1] + dy * r), (center[0] + dx * 2 * r, center[1] + dy * 2 * r),
                 color, t)
    return img


def load_heatmap(path: str | Path) -> np.ndarray:
    """A stored heatmap (float16 .npy) as (H, W) float32."""
    a = np.load(Path(path), allow_pickle=False)
    if a.ndim != 2:
        raise ValueError(f"{path}: heatmap has shape {a.shape}, expected (H, W)")
    return a.astype(np.float32)


def save_heatmap(path: str | Path, amap: np.ndarray, durable: bool = True) -> None:
    """Store a map as float16 .npy via a temp file + rename (values beyond float16 are clipped).

    `durable=False` skips the fsync: readers still never see a half-written file, but a power
    loss may lose recent maps. For an evaluation's many maps, which are derived data that a new
    evaluation recreates, the per-file fsync (~5 ms each here) is what limits a fast model.
    """
    a = amap if amap.dtype == np.float16 else np.clip(np.asarray(amap, dtype=np.float32),
                                                       -65504, 65504).astype(np.float16)
    if durable:
        from engine.fsutil import atomic_write

        atomic_write(path, lambda tmp: _np_save(tmp, a))
        return
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        _np_save(tmp, a)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _np_save(tmp: Path, a: np.ndarray) -> None:
    with open(tmp, "wb") as fh:  # a file object: np.save would append ".npy" to a bare name
        np.save(fh, a, allow_pickle=False)


def _rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {img.dtype}")
    return np.ascontiguousarray(img[:, :, :3])
