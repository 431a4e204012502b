"""Rasterise drawing-canvas objects (Fabric.js JSON) into a full-resolution mask.

The canvas (streamlit-drawable-canvas) shows a downscaled or zoomed view of the image and
returns what was drawn as Fabric objects in canvas pixels. Nothing here depends on the canvas'
own bitmap: each object is re-drawn at image resolution, in drawing order, over the previous
mask, so erasing then redrawing the same place works.

Conventions (tests/engine/test_annotate.py pins them down):
- Canvas -> image: x_img = crop_x + (x_canvas - offset_x) / scale_x (same for y). A pixel
  (col c, row r) spans [c, c+1) x [r, r+1) and is covered when its centre (c+.5, r+.5) lies in
  the painted area (on a fill's right/bottom edge: outside; within a stroke's half width: in).
- Painted area of an object = its fill (if painted) united with its stroke (if painted and
  wider than 0). Freehand paths and outlines have round caps and joins; a rectangle's outline
  has mitred corners (the rectangle grown by half the stroke). The stroke is never thinner
  than one image pixel. Fills use the non-zero winding rule, like Fabric.
- An object whose stroke or fill has the eraser colour (the RGB of ERASER_STROKE) clears the
  pixels it paints; any other object sets them. Objects apply in list (= drawing) order.
- Placement of objects on the canvas follows Fabric 7 (see engine.annotation.fabric).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.annotation.fabric import Shape, object_shape

log = logging.getLogger(__name__)

PAINT_STROKE = "rgba(255, 48, 48, 0.85)"  # defect pixels drawn with the brush, and outlines
PAINT_FILL = "rgba(255, 48, 48, 0.35)"  # inside of defect rectangles and polygons
ERASER_STROKE = "rgba(0, 229, 255, 0.85)"  # reserved: an object in this colour erases
ERASER_FILL = "rgba(0, 229, 255, 0.35)"
MIN_HALF_WIDTH = 0.5  # image px: a stroke always covers the pixels it passes through
SIMPLIFY_PX = 0.05  # image px: stroke centre lines are simplified within this (speed, not looks)


@dataclass(frozen=True)
class CanvasGeometry:
    """Where the image view sits on the canvas (contain fit) and which part it shows (zoom)."""

    scale_x: float  # canvas px per image px
    scale_y: float
    offset_x: float = 0.0  # canvas x of the view's left edge (margin of the contain fit)
    offset_y: float = 0.0
    crop_x: float = 0.0  # image x of the view's left edge (zoom crop)
    crop_y: float = 0.0

    @classmethod
    def contain(cls, canvas_wh: tuple[int, int], view: tuple[int, int, int, int],
                background_wh: tuple[int, int] | None = None) -> CanvasGeometry:
        """Geometry of background_image_fit="contain" (the canvas' own formula).

        `view` = (x0, y0, x1, y1), the image pixels shown; `background_wh` = size of the
        background image sent to the canvas (the view resampled), by default the view's size.
        """
        x0, y0, x1, y1 = view
        bw, bh = background_wh or (x1 - x0, y1 - y0)
        fit = min(canvas_wh[0] / bw, canvas_wh[1] / bh)
        return cls(scale_x=fit * bw / (x1 - x0), scale_y=fit * bh / (y1 - y0),
                   offset_x=(canvas_wh[0] - bw * fit) / 2, offset_y=(canvas_wh[1] - bh * fit) / 2,
                   crop_x=float(x0), crop_y=float(y0))

    def to_image(self, pts: np.ndarray) -> np.ndarray:
        """(N, 2) canvas px -> (N, 2) image px."""
        return np.stack([self.crop_x + (pts[:, 0] - self.offset_x) / self.scale_x,
                         self.crop_y + (pts[:, 1] - self.offset_y) / self.scale_y], axis=1)

    @property
    def px_per_image_px(self) -> float:
        """Canvas px per image px (geometric mean of both axes: stroke widths)."""
        return math.sqrt(self.scale_x * self.scale_y)


_RGBA = re.compile(r"rgba?\(([\d.]+),([\d.]+),([\d.]+)(?:,([\d.]+))?\)")
_NAMED = {"black": "#000000", "white": "#ffffff", "red": "#ff0000", "green": "#008000",
          "blue": "#0000ff", "yellow": "#ffff00", "cyan": "#00ffff", "magenta": "#ff00ff"}


def parse_color(color: Any) -> tuple[int, int, int, float] | None:
    """CSS colour (#rgb[a], #rrggbb[aa], rgb(), rgba(), a few names) -> RGBA; None if not paint."""
    if not isinstance(color, str):
        return None
    c = color.strip().lower().replace(" ", "")
    c = _NAMED.get(c, c)
    if c.startswith("#") and len(c) in (4, 5, 7, 9):
        h = "".join(ch * 2 for ch in c[1:]) if len(c) <= 5 else c[1:]
        try:
            rgb = tuple(int(h[i:i + 2], 16) for i in (0, 2, 4))
            return (*rgb, int(h[6:8], 16) / 255 if len(h) == 8 else 1.0)  # type: ignore[return-value]
        except ValueError:
            return None
    m = _RGBA.fullmatch(c)
    if not m:
        return None
    alpha = float(m.group(4)) if m.group(4) is not None else 1.0
    return round(float(m.group(1))), round(float(m.group(2))), round(float(m.group(3))), alpha


def _painted(color: Any) -> bool:
    rgba = parse_color(color)
    return rgba is not None and rgba[3] > 0


_ERASER_RGB = parse_color(ERASER_STROKE)[:3]  # type: ignore[index]


def is_eraser(obj: dict[str, Any]) -> bool:
    """Whether the object was drawn in the reserved eraser colour (stroke or fill)."""
    return any((rgba := parse_color(obj.get(k))) is not None and rgba[:3] == _ERASER_RGB
               for k in ("stroke", "fill"))


def _window(pts: np.ndarray, pad: float, hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Pixel bounds (r0, r1, c0, c1) of points grown by `pad`, clipped; None if off the image."""
    lo, hi = pts.min(axis=0) - pad, pts.max(axis=0) + pad
    c0, r0 = max(0, math.floor(lo[0])), max(0, math.floor(lo[1]))
    c1, r1 = min(hw[1], math.ceil(hi[0]) + 1), min(hw[0], math.ceil(hi[1]) + 1)
    return None if c0 >= c1 or r0 >= r1 else (r0, r1, c0, c1)


def fill_rings(area: np.ndarray, rings: Sequence[np.ndarray]) -> None:
    """Set pixels whose centres are inside the rings (image px), non-zero winding rule."""
    edges = [np.stack([r, np.roll(r, -1, axis=0)], axis=1) for r in rings if len(r) >= 3]
    if not edges:
        return
    e = np.concatenate(edges)  # (E, 2 ends, 2 xy)
    e = e[e[:, 0, 1] != e[:, 1, 1]]  # horizontal edges never cross a row centre
    win = _window(e.reshape(-1, 2), 0, area.shape)
    if win is None or len(e) == 0:
        return
    r0, r1, c0, c1 = win
    yc = np.arange(r0, r1) + 0.5  # (R,)
    y0, y1, x0, x1 = e[:, 0, 1], e[:, 1, 1], e[:, 0, 0], e[:, 1, 0]
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    hit = (yc[:, None] >= lo) & (yc[:, None] < hi)  # (R, E) half-open: no double counting
    xs = np.where(hit, x0 + (yc[:, None] - y0) * (x1 - x0) / (y1 - y0), np.inf)
    wind = np.where(hit, np.where(y1 > y0, 1, -1), 0)
    order = np.argsort(xs, axis=1, kind="stable")
    xs, wind = np.take_along_axis(xs, order, 1), np.take_along_axis(wind, order, 1)
    inside = np.cumsum(wind, axis=1) != 0  # after crossing k the span to crossing k+1 is inside
    rows, ks = np.nonzero(inside[:, :-1] & np.isfinite(xs[:, 1:]))
    if len(rows) == 0:
        return
    # a pixel centre x+.5 in [xa, xb)  <=>  ceil(xa - .5) <= x < ceil(xb - .5)
    a = np.clip(np.ceil(xs[rows, ks] - 0.5).astype(np.int64), c0, c1)
    b = np.clip(np.ceil(xs[rows, ks + 1] - 0.5).astype(np.int64), c0, c1)
    diff = np.zeros((r1 - r0, c1 - c0 + 1), dtype=np.int32)
    np.add.at(diff, (rows, a - c0), 1)
    np.add.at(diff, (rows, b - c0), -1)
    area[r0:r1, c0:c1] |= np.cumsum(diff, axis=1)[:, :-1] > 0


def simplify(pts: np.ndarray, eps: float) -> np.ndarray:
    """Ramer-Douglas-Peucker: drop points within `eps` of the line through their neighbours."""
    if len(pts) < 3:
        return pts
    keep = np.zeros(len(pts), dtype=bool)
    keep[[0, -1]] = True
    stack = [(0, len(pts) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        d = pts[b] - pts[a]
        rel = pts[a + 1:b] - pts[a]
        n = float(np.hypot(*d))
        dist = np.abs(rel[:, 0] * d[1] - rel[:, 1] * d[0]) / n if n > 0 else np.hypot(rel[:, 0], rel[:, 1])
        k = int(np.argmax(dist))
        if dist[k] > eps:
            keep[a + 1 + k] = True
            stack += [(a, a + 1 + k), (a + 1 + k, b)]
    return pts[keep]


def stroke_lines(area: np.ndarray, lines: Sequence[tuple[np.ndarray, bool]], half: float) -> None:
    """Set pixels whose centres are within `half` image px of a polyline (round caps/joins)."""
    for pts, closed in lines:
        if closed and len(pts) > 1:
            pts = np.vstack([pts, pts[:1]])
        pts = simplify(pts, SIMPLIFY_PX)
        segs = np.stack([pts[:-1], pts[1:]], axis=1) if len(pts) > 1 else np.stack([pts, pts], axis=1)
        for p, q in segs:
            win = _window(np.stack([p, q]), half, area.shape)
            if win is None:
                continue
            r0, r1, c0, c1 = win
            cy, cx = np.mgrid[r0:r1, c0:c1] + 0.5
            d = q - p
            n2 = float(d @ d)
            t = np.zeros_like(cx) if n2 == 0 else np.clip(((cx - p[0]) * d[0] + (cy - p[1]) * d[1]) / n2, 0, 1)
            dist2 = (cx - p[0] - t * d[0]) ** 2 + (cy - p[1] - t * d[1]) ** 2
            area[r0:r1, c0:c1] |= dist2 <= half * half


def grow_convex(ring: np.ndarray, by: float) -> np.ndarray:
    """A convex ring with each edge moved outwards by `by` (mitred corners)."""
    n = len(ring)
    sign = 1.0 if np.sum(ring[:, 0] * np.roll(ring[:, 1], -1) - np.roll(ring[:, 0], -1) * ring[:, 1]) > 0 else -1.0
    out = []
    for i in range(n):
        a, b, c = ring[i - 1], ring[i], ring[(i + 1) % n]
        n1, n2 = _normal(b - a, sign), _normal(c - b, sign)
        bis = n1 + n2
        k = float(bis @ n1)
        out.append(b + bis * (by / k) if abs(k) > 1e-9 else b + n1 * by)
    return np.array(out)


def _normal(v: np.ndarray, sign: float) -> np.ndarray:
    """Outward unit normal of an edge of a ring with orientation `sign` (image y points down)."""
    length = float(np.hypot(*v)) or 1.0
    return np.array([v[1], -v[0]]) * sign / length


def object_area(obj: dict[str, Any], hw: tuple[int, int],
                geometry: CanvasGeometry) -> tuple[int, int, np.ndarray] | None:
    """(row0, col0, area): the image pixels one canvas object paints, as a bool window whose
    top-left pixel is (row0, col0); None when it paints nothing on the image."""
    fill, stroke = _painted(obj.get("fill")), _painted(obj.get("stroke"))
    shape: Shape | None = object_shape(obj, fill=fill, stroke=stroke)
    if shape is None:
        return None
    rings = [geometry.to_image(r) for r in shape.fills]
    lines = [(geometry.to_image(p), c) for p, c in shape.lines]
    half = max(MIN_HALF_WIDTH, shape.stroke_width / 2 / geometry.px_per_image_px)
    use_stroke = bool(stroke and shape.stroke_width > 0 and lines)
    if use_stroke and shape.stroke_joins_mitred:  # rectangle: outline = grown rectangle
        rings = [grow_convex(p, half) for p, _ in lines]
        lines = []
    if not use_stroke:
        lines = []
    pts = [r for r in rings if len(r)] + [p for p, _ in lines if len(p)]
    win = _window(np.vstack(pts), half + 1, hw) if pts else None
    if win is None:
        return None
    r0, r1, c0, c1 = win
    shift = np.array([c0, r0], dtype=np.float64)
    area = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    fill_rings(area, [r - shift for r in rings])
    stroke_lines(area, [(p - shift, c) for p, c in lines], half)
    return r0, c0, area


def rasterise(objects: Sequence[dict[str, Any]], base_mask: np.ndarray,
              geometry: CanvasGeometry) -> np.ndarray:
    """Apply canvas objects in drawing order over a copy of `base_mask` ((H, W) bool).

    Eraser-coloured objects clear pixels, all others set them; the base mask is not changed.
    """
    mask = np.array(base_mask, dtype=bool, copy=True)
    for obj in objects:
        found = object_area(obj, mask.shape, geometry)
        if found is not None:
            r0, c0, area = found
            mask[r0:r0 + area.shape[0], c0:c0 + area.shape[1]][area] = not is_eraser(obj)
    return mask
