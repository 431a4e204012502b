"""Fabric.js 7 object JSON -> shapes in canvas pixels (what engine.annotation.rasterise rasterises).

Placement follows Fabric: left/top sit at the object's origin (originX/originY, default
"center") of its transformed box (width/height plus stroke, scaled, skewed); the object is
rotated by `angle` about that origin point, and its local geometry (centred on 0, 0) goes through
calcOwnMatrix = translate(centre) · rotate · scale(flip) · skewX · skewY. Path and polygon
points are local after subtracting their pathOffset, the centre of their bounding box as Fabric
computes it (including its quirks, so objects land exactly where the browser drew them).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ORIGINS = {"left": -0.5, "top": -0.5, "center": 0.0, "bottom": 0.5, "right": 0.5}
CURVE_STEP = 2.0  # canvas px per line segment when flattening Bezier curves
CIRCLE_STEPS = 96  # segments of a flattened circle or ellipse

Affine = np.ndarray  # (2, 3): [[a, c, e], [b, d, f]] — Fabric's [a, b, c, d, e, f] as rows


@dataclass
class Shape:
    """An object's geometry in canvas px: areas to fill, lines to stroke, and how wide."""

    fills: list[np.ndarray] = field(default_factory=list)  # closed rings (N, 2), non-zero rule
    lines: list[tuple[np.ndarray, bool]] = field(default_factory=list)  # (N, 2) polylines, closed?
    stroke_width: float = 0.0  # canvas px (already scaled by the object's transform)
    stroke_joins_mitred: bool = False  # rect outlines: grown rectangle instead of round joins


def _mul(a: Affine, b: Affine) -> Affine:
    """a · b for 2x3 affine matrices."""
    row = np.array([[0.0, 0.0, 1.0]])
    return (np.vstack([a, row]) @ np.vstack([b, row]))[:2]


def apply(m: Affine, pts: np.ndarray) -> np.ndarray:
    """(N, 2) points through a 2x3 affine matrix."""
    return pts @ m[:, :2].T + m[:, 2]


def _num(obj: dict[str, Any], key: str, default: float = 0.0) -> float:
    v = obj.get(key, default)
    return default if v is None else float(v)


def _linear(obj: dict[str, Any]) -> Affine:
    """Fabric's calcDimensionsMatrix: scale (with flips) · skewX · skewY."""
    sx = _num(obj, "scaleX", 1.0) * (-1 if obj.get("flipX") else 1)
    sy = _num(obj, "scaleY", 1.0) * (-1 if obj.get("flipY") else 1)
    m = np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0]])
    if kx := _num(obj, "skewX"):
        m = _mul(m, np.array([[1.0, math.tan(math.radians(kx)), 0.0], [0.0, 1.0, 0.0]]))
    if ky := _num(obj, "skewY"):
        m = _mul(m, np.array([[1.0, 0.0, 0.0], [math.tan(math.radians(ky)), 1.0, 0.0]]))
    return m


def _origin(value: Any) -> float:
    if value is None:
        return 0.0
    return ORIGINS.get(value, 0.0) if isinstance(value, str) else float(value) - 0.5


def object_matrix(obj: dict[str, Any]) -> Affine:
    """Canvas-from-local matrix of a Fabric object (its calcOwnMatrix)."""
    w, h, sw = _num(obj, "width"), _num(obj, "height"), _num(obj, "strokeWidth")
    uniform = bool(obj.get("strokeUniform"))
    lin = _linear(obj)
    pre = 0.0 if uniform else sw  # _getTransformedDimensions: stroke before or after scaling
    corners = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]], dtype=np.float64) * [(w + pre) / 2, (h + pre) / 2]
    box = apply(lin, corners)
    dims = box.max(axis=0) - box.min(axis=0) + (sw if uniform else 0.0)
    left, top = _num(obj, "left"), _num(obj, "top")
    cx = left - _origin(obj.get("originX", "center")) * dims[0]
    cy = top - _origin(obj.get("originY", "center")) * dims[1]
    angle = math.radians(_num(obj, "angle"))
    cos, sin = math.cos(angle), math.sin(angle)
    if angle:  # translateToCenterPoint rotates the centre about the origin point
        dx, dy = cx - left, cy - top
        cx, cy = left + dx * cos - dy * sin, top + dx * sin + dy * cos
    return _mul(np.array([[cos, -sin, cx], [sin, cos, cy]]), lin)


def _cubic_at(c: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points of the cubic with control points c (4, 2) at parameters t (K,) -> (K, 2)."""
    t = t[:, None]
    u = 1 - t
    return u**3 * c[0] + 3 * u * u * t * c[1] + 3 * u * t * t * c[2] + t**3 * c[3]


def _cubic_bounds(c: np.ndarray) -> np.ndarray:
    """Fabric's getBoundsOfCurve: end points and the points at each axis' extrema."""
    ts: list[float] = []
    for i in range(2):
        b = 6 * c[0, i] - 12 * c[1, i] + 6 * c[2, i]
        a = -3 * c[0, i] + 9 * c[1, i] - 9 * c[2, i] + 3 * c[3, i]
        k = 3 * c[1, i] - 3 * c[0, i]
        if abs(a) < 1e-12:
            if abs(b) >= 1e-12 and 0 < -k / b < 1:
                ts.append(-k / b)
            continue
        disc = b * b - 4 * k * a
        if disc >= 0:
            ts += [t for t in ((-b + math.sqrt(disc)) / (2 * a), (-b - math.sqrt(disc)) / (2 * a)) if 0 < t < 1]
    return np.vstack([_cubic_at(c, np.array(ts)), c[[0, 3]]])


def absolute_path(path: Iterable[Sequence[Any]]) -> list[tuple[str, list[float]]]:
    """Path commands made absolute (M L H V Q C Z, either case); Fabric stores them absolute."""
    out: list[tuple[str, list[float]]] = []
    x = y = sx = sy = 0.0
    need = {"M": 2, "L": 2, "Q": 4, "C": 6}
    for cmd in path:
        if not cmd:
            continue
        op, args = str(cmd[0]), [float(v) for v in cmd[1:]]
        rel, up = op.islower(), op.upper()
        if up == "Z":
            out.append(("Z", []))
            x, y = sx, sy
            continue
        if up == "H" and args:
            up, args = "L", [args[0] + (x if rel else 0.0), y]
        elif up == "V" and args:
            up, args = "L", [x, args[0] + (y if rel else 0.0)]
        elif rel:
            args = [v + (x if i % 2 == 0 else y) for i, v in enumerate(args)]
        if up not in need or len(args) < need[up]:
            log.warning("path command %r not understood; ignored", cmd)
            continue
        out.append((up, args[: need[up]]))
        x, y = args[need[up] - 2], args[need[up] - 1]
        if up == "M":
            sx, sy = x, y
    return out


def path_offset(cmds: list[tuple[str, list[float]]]) -> np.ndarray:
    """Centre of the path's bounding box exactly as Fabric's _calcBoundsFromPath has it.

    Its quirks are kept on purpose: an L adds the subpath's start point rather than the
    current one, and a Q is bounded as the cubic whose two control points are the Q's.
    """
    pts: list[np.ndarray] = []
    x = y = sx = sy = 0.0
    for op, a in cmds:
        if op == "L":
            pts.append(np.array([[sx, sy], a[0:2]]))
            x, y = a[0], a[1]
        elif op == "M":
            x = sx = a[0]
            y = sy = a[1]
        elif op == "C":
            pts.append(_cubic_bounds(np.array([[x, y], a[0:2], a[2:4], a[4:6]])))
            x, y = a[4], a[5]
        elif op == "Q":
            pts.append(_cubic_bounds(np.array([[x, y], a[0:2], a[0:2], a[2:4]])))
            x, y = a[2], a[3]
        elif op == "Z":
            x, y = sx, sy
    if not pts:
        return np.zeros(2)
    allp = np.vstack(pts)
    return (allp.min(axis=0) + allp.max(axis=0)) / 2


def flatten_path(cmds: list[tuple[str, list[float]]]) -> list[tuple[np.ndarray, bool]]:
    """Subpaths as (N, 2) polylines with a closed flag; curves sampled every ~2 canvas px."""
    subpaths: list[tuple[np.ndarray, bool]] = []
    cur: list[np.ndarray] = []
    pen = np.zeros(2)
    for op, a in cmds:
        if op == "M":
            if cur:
                subpaths.append((np.vstack(cur), False))
            pen = np.array(a[0:2])
            cur = [pen[None]]
            continue
        if op == "Z":
            if cur:
                subpaths.append((np.vstack(cur), True))
                pen = cur[0][0]
            cur = []
            continue
        if not cur:
            cur = [pen[None]]
        ctrl = np.vstack([pen[None], np.reshape(a, (-1, 2))])
        if op == "L":
            seg = ctrl[1:]
        else:
            if op == "Q":  # degree elevation: the same curve as a cubic
                ctrl = np.vstack([ctrl[0], ctrl[0] + 2 / 3 * (ctrl[1] - ctrl[0]),
                                  ctrl[2] + 2 / 3 * (ctrl[1] - ctrl[2]), ctrl[2]])
            length = float(np.linalg.norm(np.diff(ctrl, axis=0), axis=1).sum())
            n = max(2, min(64, math.ceil(length / CURVE_STEP)))
            seg = _cubic_at(ctrl, np.linspace(0, 1, n + 1)[1:])
        cur.append(seg)
        pen = seg[-1]
    if cur:
        subpaths.append((np.vstack(cur), False))
    return subpaths


def _ellipse(rx: float, ry: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, CIRCLE_STEPS, endpoint=False)
    return np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1)


def object_shape(obj: dict[str, Any], *, fill: bool, stroke: bool) -> Shape | None:
    """The object's fill rings and stroke lines in canvas px (None: a type we cannot draw)."""
    kind = str(obj.get("type", "")).lower()
    m = object_matrix(obj)
    w, h = _num(obj, "width"), _num(obj, "height")
    closed_local: np.ndarray | None = None
    lines_local: list[tuple[np.ndarray, bool]] = []
    mitred = False
    if kind == "path":
        cmds = absolute_path(obj.get("path") or [])
        off = path_offset(cmds)
        subs = [(p - off, closed) for p, closed in flatten_path(cmds)]
        fills = [apply(m, p) for p, _ in subs if len(p) >= 3] if fill else []
        shape = Shape(fills=fills, lines=[(apply(m, p), c) for p, c in subs] if stroke else [])
        return _with_width(shape, obj, m)
    if kind in ("polygon", "polyline"):
        pts = np.array([[float(p["x"]), float(p["y"])] for p in obj.get("points") or []]).reshape(-1, 2)
        if len(pts) == 0:
            return Shape()
        off = (pts.min(axis=0) + pts.max(axis=0)) / 2
        if isinstance(obj.get("pathOffset"), dict):
            off = np.array([float(obj["pathOffset"]["x"]), float(obj["pathOffset"]["y"])])
        closed_local = pts - off if kind == "polygon" else None
        lines_local = [(pts - off, kind == "polygon")]
        if kind == "polyline":
            return _with_width(Shape(fills=[apply(m, pts - off)] if fill and len(pts) >= 3 else [],
                                     lines=[(apply(m, pts - off), False)] if stroke else []), obj, m)
    elif kind in ("rect", "labeledrect"):
        closed_local = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
        lines_local = [(closed_local, True)]
        mitred = True
    elif kind == "circle":
        r = _num(obj, "radius", w / 2)
        closed_local = _ellipse(r, r)
        lines_local = [(closed_local, True)]
    elif kind == "ellipse":
        closed_local = _ellipse(_num(obj, "rx", w / 2), _num(obj, "ry", h / 2))
        lines_local = [(closed_local, True)]
    elif kind == "triangle":
        closed_local = np.array([[-w / 2, h / 2], [0.0, -h / 2], [w / 2, h / 2]])
        lines_local = [(closed_local, True)]
    elif kind == "line":
        seg = np.array([[_num(obj, "x1"), _num(obj, "y1")], [_num(obj, "x2"), _num(obj, "y2")]])
        return _with_width(Shape(lines=[(apply(m, seg), False)] if stroke else []), obj, m)
    else:
        log.warning("canvas object of type %r is not rasterised", obj.get("type"))
        return None
    shape = Shape(fills=[apply(m, closed_local)] if fill else [],
                  lines=[(apply(m, p), c) for p, c in lines_local] if stroke else [],
                  stroke_joins_mitred=mitred)
    return _with_width(shape, obj, m)


def _with_width(shape: Shape, obj: dict[str, Any], m: Affine) -> Shape:
    """Stroke width in canvas px: scaled with the object unless strokeUniform."""
    sw = _num(obj, "strokeWidth")
    if not obj.get("strokeUniform"):
        sw *= math.sqrt(abs(float(np.linalg.det(m[:, :2]))))
    shape.stroke_width = sw
    return shape
