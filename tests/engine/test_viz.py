"""Heatmap display helpers: shapes, dtypes, the >= rule, float16 round trip, no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from engine.evaluation import heatmaps as viz


def test_colorize_and_overlay_shapes() -> None:
    amap = np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(48, 64)
    c = viz.colorize(amap, 0.0, 1.0)
    assert c.shape == (48, 64, 3) and c.dtype == np.uint8
    assert not np.array_equal(c[0, 0], c[-1, -1])  # low and high get different colours
    np.testing.assert_array_equal(viz.colorize(amap, 0.5, 0.5).shape, (48, 64, 3))
    img = np.full((120, 90, 3), 128, np.uint8)  # original grid differs from the map's
    o = viz.overlay(img, amap, 0.0, 1.0, alpha=0.5)
    assert o.shape == (120, 90, 3) and o.dtype == np.uint8


def test_to_original_grid_and_predicted_mask() -> None:
    amap = np.zeros((32, 32), np.float16)
    amap[8:16, 8:16] = 1.0
    big = viz.to_original_grid(amap, (100, 50))
    assert big.shape == (100, 50) and big.dtype == np.float32
    pm = viz.predicted_mask(amap, 1.0)
    assert pm.dtype == bool and pm.sum() == 64  # ">=": equal to the threshold is NOK


def test_mask_overlay_and_heatmap_roundtrip(tmp_path: Path) -> None:
    img = np.zeros((20, 30, 3), np.uint8)
    mask = np.zeros((10, 15), bool)
    mask[2:5, 3:9] = True
    out = viz.mask_overlay(img, mask, (255, 0, 0), 0.5)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8 and out[:, :, 0].max() > 0
    a = np.random.default_rng(0).random((16, 24)).astype(np.float32)
    viz.save_heatmap(tmp_path / "h.npy", a)
    assert np.load(tmp_path / "h.npy").dtype == np.float16
    back = viz.load_heatmap(tmp_path / "h.npy")
    assert back.dtype == np.float32 and back.shape == (16, 24)
    np.testing.assert_allclose(back, a, atol=1e-3)


def test_viz_does_not_import_torch() -> None:
    code = "import sys, engine.evaluation.heatmaps; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
