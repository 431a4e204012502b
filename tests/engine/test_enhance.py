"""Thesis enhancement: uint8 RGB in and out, deterministic, visibly changes contrast."""

from __future__ import annotations

import numpy as np
import pytest

from engine.intake.enhance import enhance
from engine.training.data import enhance_flags


def _img() -> np.ndarray:
    y, x = np.mgrid[0:64, 0:64]
    g = (60 + 40 * np.sin(x / 5.0) + y).astype(np.uint8)
    return np.stack([g, g, g], axis=-1)  # (64, 64, 3) gray


def test_shape_dtype_and_determinism() -> None:
    img = _img()
    out = enhance(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out, enhance(img))
    assert np.abs(out.astype(int) - img.astype(int)).mean() > 1.0
    assert out.std() > img.std()  # CLAHE + unsharp raise contrast
    spread = out.astype(int).max(axis=2) - out.astype(int).min(axis=2)
    assert spread.max() <= 6  # gray stays gray (L channel only; LAB rounding)


def test_rejects_non_rgb_uint8() -> None:
    with pytest.raises(ValueError):
        enhance(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError):
        enhance(np.zeros((8, 8, 3), np.float32))


def test_train_share_is_a_fixed_seeded_choice() -> None:
    flags = enhance_flags(100, 0.15, seed=3)
    assert flags.sum() == 15 and np.array_equal(flags, enhance_flags(100, 0.15, seed=3))
    assert enhance_flags(10, 0.0, seed=0).sum() == 0
