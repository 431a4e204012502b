"""The DFR feature cache: a bounded float16 file read back by index."""

from __future__ import annotations

import numpy as np
import torch

from engine.training.feature_cache import FeatureCache


def test_cache_round_trips_items_by_index_in_float16(tmp_path) -> None:
    feats = torch.randn(5, 3, 4, 4)
    cache = FeatureCache.create(tmp_path / "c.f16", (5, 3, 4, 4), max_gb=1.0)
    assert cache is not None
    cache.write(torch.tensor([3, 0]), feats[[3, 0]])
    cache.write(torch.tensor([1, 2, 4]), feats[[1, 2, 4]])
    got = cache.read(np.array([4, 1, 3]))  # returned in ascending index order
    assert got.dtype == torch.float32 and got.shape == (3, 3, 4, 4)
    assert torch.allclose(got, feats[[1, 3, 4]].half().float())
    assert (tmp_path / "c.f16").stat().st_size == 5 * 3 * 4 * 4 * 2
    cache.delete()
    assert not (tmp_path / "c.f16").exists()


def test_cache_reads_only_the_asked_map_positions(tmp_path) -> None:
    feats = torch.randn(3, 2, 4, 4)
    cache = FeatureCache.create(tmp_path / "c.f16", (3, 2, 4, 4), max_gb=1.0)
    cache.write(torch.arange(3), feats)
    positions = np.array([15, 0, 6])  # (row 3, col 3), (0, 0), (1, 2) of the 4×4 map
    got = cache.read(np.array([2, 0]), positions)
    assert got.dtype == torch.float32 and got.shape == (2, 2, 3, 1)
    want = feats[[0, 2]].half().float()[:, :, [3, 0, 1], [3, 0, 2]]  # (B, C, k)
    assert torch.equal(got[..., 0], want)
    cache.delete()


def test_cache_is_off_above_its_bound_or_at_zero(tmp_path) -> None:
    assert FeatureCache.create(tmp_path / "c.f16", (1000, 464, 64, 64), max_gb=1.0) is None  # 3.8 GB
    assert FeatureCache.create(tmp_path / "c.f16", (1, 1, 1, 1), max_gb=0) is None
    assert not (tmp_path / "c.f16").exists()
