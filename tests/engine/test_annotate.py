"""Rasterisation of canvas objects: hand-made Fabric JSON with exact pixel expectations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine.annotation.fabric import absolute_path, path_offset
from engine.annotation.rasterise import (
    ERASER_FILL,
    ERASER_STROKE,
    PAINT_FILL,
    PAINT_STROKE,
    CanvasGeometry,
    is_eraser,
    parse_color,
    rasterise,
)

DATA = Path(__file__).parent / "data"
ONE = CanvasGeometry(scale_x=1.0, scale_y=1.0)  # canvas px = image px


def rect(left: float, top: float, w: float, h: float, *, erase: bool = False, stroke_width: float = 0,
         **extra: Any) -> dict[str, Any]:
    """A Rect as the canvas' rect tool makes it (origin left/top, strokeUniform)."""
    return {"type": "Rect", "originX": "left", "originY": "top", "left": left, "top": top,
            "width": w, "height": h, "fill": ERASER_FILL if erase else PAINT_FILL,
            "stroke": ERASER_STROKE if erase else PAINT_STROKE, "strokeWidth": stroke_width,
            "strokeUniform": True, "scaleX": 1, "scaleY": 1, "angle": 0, **extra}


def path(points: list[tuple[float, float]], width: float, *, erase: bool = False) -> dict[str, Any]:
    """A freehand Path as Fabric's pencil brush makes it (M, Q..., L), placed by its centre."""
    cmds: list[list[Any]] = [["M", *points[0]]]
    for p, q in zip(points[:-1], points[1:]):
        cmds.append(["Q", p[0], p[1], (p[0] + q[0]) / 2, (p[1] + q[1]) / 2])
    cmds.append(["L", *points[-1]])
    off = path_offset(absolute_path(cmds))
    return {"type": "Path", "originX": "center", "originY": "center", "left": off[0], "top": off[1],
            "width": 0, "height": 0, "fill": None, "stroke": ERASER_STROKE if erase else PAINT_STROKE,
            "strokeWidth": width, "strokeLineCap": "round", "strokeLineJoin": "round", "path": cmds}


def expected_capsule(hw: tuple[int, int], p: tuple[float, float], q: tuple[float, float], r: float) -> np.ndarray:
    """Pixels whose centres are within r of segment pq (independent reference)."""
    yy, xx = np.mgrid[0:hw[0], 0:hw[1]] + 0.5
    p_, d = np.array(p), np.subtract(q, p)
    t = np.clip(((xx - p_[0]) * d[0] + (yy - p_[1]) * d[1]) / (d @ d), 0, 1)
    return (xx - p_[0] - t * d[0]) ** 2 + (yy - p_[1] - t * d[1]) ** 2 <= r * r


def box(hw: tuple[int, int], r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros(hw, dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


def test_rect_covers_pixels_whose_centres_are_inside() -> None:
    m = rasterise([rect(10, 20, 15, 5)], np.zeros((40, 50), bool), ONE)
    np.testing.assert_array_equal(m, box((40, 50), 20, 25, 10, 25))


def test_rect_half_pixel_edges_and_outline_grows_by_half_the_stroke() -> None:
    # x [10.4, 15.4) holds centres 10.5..14.5; y [20.6, 25.6) holds 21.5..25.5
    m = rasterise([rect(10.4, 20.6, 5, 5)], np.zeros((40, 40), bool), ONE)
    np.testing.assert_array_equal(m, box((40, 40), 21, 26, 10, 15))
    # Fabric places left/top at the outer edge of the stroke: the 10x10 rectangle lies at
    # 12..22 and its 4 px outline reaches from 10 to 24
    m = rasterise([rect(10, 10, 10, 10, stroke_width=4)], np.zeros((40, 40), bool), ONE)
    np.testing.assert_array_equal(m, box((40, 40), 10, 24, 10, 24))


def test_rect_scaled_and_rotated_about_its_origin() -> None:
    # 10x10 at scale 2, turned 90° about its top-left corner (30, 10): covers x 10..30, y 10..30
    obj = rect(30, 10, 10, 10, scaleX=2, scaleY=2, angle=90)
    m = rasterise([obj], np.zeros((40, 40), bool), ONE)
    np.testing.assert_array_equal(m, box((40, 40), 10, 30, 10, 30))


def test_freehand_path_is_a_round_capped_stroke() -> None:
    hw = (40, 60)
    m = rasterise([path([(10, 20), (30, 20), (50, 20)], 6)], np.zeros(hw, bool), ONE)
    np.testing.assert_array_equal(m, expected_capsule(hw, (10, 20), (50, 20), 3))
    assert m[20, 7] and not m[20, 6] and m[17, 30] and not m[16, 30]


def test_path_with_curves_follows_the_quadratic() -> None:
    cmds = [["M", 10, 10], ["Q", 30, 10, 30, 30]]
    off = path_offset(absolute_path(cmds))
    obj = {"type": "Path", "left": off[0], "top": off[1], "stroke": PAINT_STROKE, "strokeWidth": 2,
           "fill": None, "path": cmds}
    m = rasterise([obj], np.zeros((40, 40), bool), ONE)
    # B(0.5) = (25, 15): on the curve; the control point (30, 10) is not
    assert m[15, 25] and m[10, 10] and m[30, 30] and not m[10, 30]


def test_fabric_path_offset_quirks() -> None:
    # an L adds the subpath start; a Q is bounded as the cubic (p0, c, c, p2)
    assert tuple(path_offset(absolute_path([["M", 0, 0], ["L", 10, 4]]))) == (5, 2)
    cx, cy = path_offset(absolute_path([["M", 0, 0], ["Q", 10, 20, 20, 0]]))
    assert cx == 10 and cy == pytest.approx(7.5)  # the true quadratic's peak would give 5


def test_polygon_points_relative_to_their_path_offset() -> None:
    pts = [{"x": 10, "y": 10}, {"x": 30, "y": 10}, {"x": 30, "y": 20}, {"x": 20, "y": 20},
           {"x": 20, "y": 30}, {"x": 10, "y": 30}]  # an L shape
    obj = {"type": "Polygon", "originX": "center", "originY": "center", "left": 20, "top": 20,
           "width": 20, "height": 20, "points": pts, "fill": PAINT_FILL, "stroke": None, "strokeWidth": 1}
    m = rasterise([obj], np.zeros((40, 40), bool), ONE)
    np.testing.assert_array_equal(m, box((40, 40), 10, 20, 10, 30) | box((40, 40), 20, 30, 10, 20))
    moved = rasterise([{**obj, "left": 25, "top": 22}], np.zeros((40, 40), bool), ONE)  # moved by (5, 2)
    np.testing.assert_array_equal(moved, np.roll(np.roll(m, 5, axis=1), 2, axis=0))


def test_eraser_stroke_clears_only_its_own_pixels() -> None:
    hw = (40, 60)
    base = box(hw, 10, 30, 10, 50)
    m = rasterise([path([(0, 20), (60, 20)], 4, erase=True)], base, ONE)
    np.testing.assert_array_equal(m, base & ~expected_capsule(hw, (0, 20), (60, 20), 2))
    assert base.sum() == 800  # the base mask is not modified


def test_erase_then_redraw_in_drawing_order() -> None:
    hw = (40, 40)
    objs = [rect(5, 5, 30, 30), rect(10, 10, 20, 20, erase=True), rect(15, 15, 5, 5)]
    m = rasterise(objs, np.zeros(hw, bool), ONE)
    np.testing.assert_array_equal(m, box(hw, 5, 35, 5, 35) & ~box(hw, 10, 30, 10, 30) | box(hw, 15, 20, 15, 20))
    # the same objects in reverse order: the big rectangle, drawn last, covers everything
    np.testing.assert_array_equal(rasterise(objs[::-1], np.zeros(hw, bool), ONE), box(hw, 5, 35, 5, 35))


def test_contain_fit_on_a_non_square_image() -> None:
    # a 300x200 image on a 400x400 canvas: scale 4/3, centred vertically (offset 66.67)
    g = CanvasGeometry.contain((400, 400), (0, 0, 300, 200))
    assert (g.scale_x, g.offset_x) == (pytest.approx(4 / 3), 0) and g.offset_y == pytest.approx(200 / 3)
    obj = rect(40, 200 / 3 + 40, 80, 80)  # canvas (40, 106.7)-(120, 186.7) -> image (30, 30)-(90, 90)
    m = rasterise([obj], np.zeros((200, 300), bool), g)
    np.testing.assert_array_equal(m, box((200, 300), 30, 90, 30, 90))
    # stroke widths scale too: 8 canvas px = 6 image px
    m = rasterise([path([(20, 200 / 3 + 40), (220, 200 / 3 + 40)], 8)], np.zeros((200, 300), bool), g)
    np.testing.assert_array_equal(m, expected_capsule((200, 300), (15, 30), (165, 30), 3))


def test_zoom_crop_offset_and_downscaled_background() -> None:
    # a 2x zoom on the view (100, 50)-(200, 125) of a 400x300 image, background sent at 50x37
    g = CanvasGeometry.contain((200, 150), (100, 50, 200, 125), background_wh=(50, 37))
    assert g.crop_x == 100 and g.crop_y == 50
    fit = min(200 / 50, 150 / 37)
    assert g.scale_x == pytest.approx(fit * 50 / 100) and g.offset_y == pytest.approx((150 - 37 * fit) / 2)
    g2 = CanvasGeometry.contain((200, 150), (100, 50, 200, 125))  # exact 2x
    m = rasterise([rect(20, 10, 40, 20)], np.zeros((300, 400), bool), g2)
    np.testing.assert_array_equal(m, box((300, 400), 55, 65, 110, 130))


def test_thin_strokes_still_cover_the_pixels_they_cross() -> None:
    g = CanvasGeometry(scale_x=4.0, scale_y=4.0)  # 1 canvas px = 1/4 image px
    m = rasterise([path([(2, 42), (158, 42)], 1)], np.zeros((20, 40), bool), g)
    assert m[10, 1:39].all() and m.sum() == np.count_nonzero(m[10])


def test_unknown_objects_and_unpainted_shapes_change_nothing() -> None:
    base = box((20, 20), 0, 5, 0, 5)
    objs = [{"type": "Textbox", "text": "x"}, rect(10, 10, 5, 5, stroke_width=0) | {"fill": "transparent"}]
    np.testing.assert_array_equal(rasterise(objs, base, ONE), base)


def test_colours() -> None:
    assert parse_color("#ff0000") == (255, 0, 0, 1.0)
    assert parse_color("rgba(0, 229, 255, 0.35)") == (0, 229, 255, 0.35)
    assert parse_color("#0f08") == (0, 255, 0, pytest.approx(0x88 / 255))
    assert parse_color(None) is None and parse_color("transparent") is None
    assert is_eraser({"stroke": ERASER_STROKE}) and is_eraser({"fill": "rgb(0,229,255)", "stroke": None})
    assert not is_eraser({"stroke": PAINT_STROKE, "fill": PAINT_FILL})


@pytest.mark.parametrize("case", ["freedraw", "rect", "polygon", "transformed"])
def test_matches_what_chromium_drew(case: str) -> None:
    """Objects drawn with the mouse in Chromium (and transformed ones) land where Fabric drew them."""
    spec = json.loads((DATA / "fabric_chromium.json").read_text())
    item = spec["cases"][case]
    ref = np.asarray(Image.open(DATA / item["reference"]).convert("L")) > 127
    mine = rasterise(item["objects"], np.zeros(ref.shape, bool), ONE)
    # differences are anti-aliasing at edges, mitred polygon corners (we round them) and
    # anisotropic stroke widths under non-uniform scaling (we use the mean)
    assert (ref ^ mine).sum() / ref.sum() < {"freedraw": 0.02, "transformed": 0.03}.get(case, 0.005)
