"""Heatmap PNGs: the model's map coloured and laid over the original image, as the dashboard
draws them (same colour map, value range, blending and pixel-threshold outline as engine's
predict), so a line operator and a quality engineer look at the same picture.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

COLORMAP = cv2.COLORMAP_TURBO  # perceptually ordered, unlike JET's banding
OUTLINE_RGB = (255, 255, 255)  # predicted-defect outline drawn when a pixel threshold is given
ALPHA = 0.45  # weight of the colour map in the blend
HEATMAP_MODE = 0o640  # group-readable: the MES / review station reads them


def colorize(amap: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """(H, W) float -> (H, W, 3) uint8 RGB; values clipped to [vmin, vmax], NaN as vmin."""
    a = np.asarray(amap, dtype=np.float32)
    span = float(vmax) - float(vmin)
    if not span > 0:
        span = 1e-12
    u8 = np.clip(np.nan_to_num((a - float(vmin)) / span, nan=0.0), 0.0, 1.0)
    u8 = np.round(u8 * 255.0).astype(np.uint8)  # (H, W)
    bgr = cv2.applyColorMap(u8, COLORMAP)  # (H, W, 3) BGR
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def to_original_grid(amap: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize a map (bilinear) to the original image's (H, W), stretching like the input rule."""
    h, w = int(size_hw[0]), int(size_hw[1])
    a = np.asarray(amap, dtype=np.float32)
    if a.shape == (h, w):
        return a
    return cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR)  # cv2 wants (W, H)


def outline(img: np.ndarray, mask: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    """Draw the outer contours of `mask` on a copy of `img` (engine's mask_overlay, alpha 0)."""
    out = img.copy()
    if mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), 1)
    return out


def render(orig: np.ndarray, amap: np.ndarray, map_range: tuple[float, float] | None,
           pixel_threshold: float | None) -> np.ndarray:
    """(H, W, 3) uint8 original + (S, S) map -> (H, W, 3) uint8 RGB overlay.

    Without a map_range each overlay is scaled to its own map (1st..99.9th percentile), so it
    shows where, not how much.
    """
    if map_range is None:
        vmin, vmax = (float(v) for v in np.percentile(amap, [1.0, 99.9]))
    else:
        vmin, vmax = float(map_range[0]), float(map_range[1])
    big = to_original_grid(amap, orig.shape[:2])  # (H, W) float32
    img = np.ascontiguousarray(orig[:, :, :3])
    heat = colorize(big, vmin, vmax)
    img = cv2.addWeighted(img, 1.0 - ALPHA, heat, ALPHA, 0.0)
    if pixel_threshold is not None:
        img = outline(img, big >= np.float32(pixel_threshold), OUTLINE_RGB)
    return img


def write_heatmap(png: str | Path, orig: np.ndarray, amap: np.ndarray,
                  map_range: tuple[float, float] | None, pixel_threshold: float | None) -> Path:
    """Render and write a PNG atomically (temp file + os.replace), group-readable."""
    png = Path(png)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(render(orig, amap, map_range, pixel_threshold),
                                                cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{png}: PNG encoding failed")
    png.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{png.name}.", suffix=".tmp", dir=png.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, HEATMAP_MODE)
        os.replace(tmp, png)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return png


def heatmap_names(paths: list[Path]) -> list[str]:
    """`<stem>_heatmap.png`, with the position added where two inputs share a stem (engine's predict
    names its PNGs with it too)."""
    stems = [p.stem for p in paths]
    dup = {s for s in stems if stems.count(s) > 1}
    return [f"{s}_{k}_heatmap.png" if s in dup else f"{s}_heatmap.png"
            for k, s in enumerate(stems)]
