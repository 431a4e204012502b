"""Frozen-backbone features computed once per training run: streamed statistics + a bounded disk cache.

The backbone of DFR never changes during training, so its features are computed in one pass
over the training images (in batches; never all of them in RAM), written to a float16 file
(plain pread/pwrite) when it fits under the configured bound, and read back each epoch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from engine.models.dfr import FeatureStats, StageFeatures
from engine.models.dfr.features import Taps
from engine.training.data import iterate

log = logging.getLogger(__name__)


class FeatureCache:
    """(N, C, m, m) float16 in a plain file; `create` returns None when it would exceed `max_gb`.

    Written and read with pwrite/pread rather than a memory map: the file's pages then live in
    the OS page cache (shared, reclaimable) instead of the training process' resident set, so
    the process' memory stays flat however many images are cached.
    """

    def __init__(self, path: Path, shape: tuple[int, ...]) -> None:
        self.path, self.shape = Path(path), tuple(shape)
        self.item_shape = self.shape[1:]
        self.item_bytes = int(np.prod(self.item_shape)) * 2  # float16
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self.fd, self.item_bytes * self.shape[0])

    @classmethod
    def create(cls, path: Path, shape: tuple[int, ...], max_gb: float) -> FeatureCache | None:
        size_gb = float(np.prod(shape)) * 2 / 1e9
        if max_gb <= 0 or size_gb > max_gb:
            log.info("feature cache off (%.2f GB needed, bound %.2f GB): features recomputed each epoch",
                     size_gb, max_gb)
            return None
        return cls(path, shape)

    def write(self, idx: torch.Tensor, feats: torch.Tensor) -> None:
        """Store feats (B, C, m, m) as items idx (B,)."""
        arr = feats.detach().to("cpu", torch.float16).contiguous().numpy()
        for i, item in zip(idx.tolist(), arr):
            os.pwrite(self.fd, item.tobytes(), i * self.item_bytes)

    def read(self, idx: np.ndarray, positions: np.ndarray | None = None) -> torch.Tensor:
        """Items idx as (B, C, m, m) float32, in ascending index order (sequential-ish reads);
        with `positions` (k indices into the flattened m×m map) only those: (B, C, k, 1), gathered
        before the float32 copy (a training step's random positions cost a fraction of the map)."""
        order = np.sort(np.asarray(idx))
        c, size = self.item_shape[0], int(np.prod(self.item_shape[1:]))
        shape = self.item_shape if positions is None else (c, len(positions), 1)
        out = np.empty((len(order), *shape), dtype=np.float16)
        for k, i in enumerate(order.tolist()):
            item = np.frombuffer(os.pread(self.fd, self.item_bytes, i * self.item_bytes), dtype=np.float16)
            out[k] = item.reshape(self.item_shape) if positions is None else item.reshape(c, size)[:, positions, None]
        return torch.from_numpy(out.astype(np.float32))

    def delete(self) -> None:
        os.close(self.fd)
        self.path.unlink(missing_ok=True)


def feature_pass(features: StageFeatures, loader: DataLoader, device: torch.device, stats: FeatureStats | None,
                 cache: FeatureCache | None, samples_per_image: int, seed: int,
                 on_batch: Callable[[int, int], None] | None = None,
                 on_taps: Callable[[Taps], None] | None = None) -> None:
    """One pass over the loader: PCA/standardisation statistics from sampled positions, cache writes;
    `on_taps` gets each batch's backbone taps (StageFeatures.tapped: the fine stage's map, the pooled
    stages' grid) in loader order."""
    gen = torch.Generator().manual_seed(seed)
    steps = len(loader)
    use_amp = device.type == "cuda"
    for step, (idx, x) in enumerate(iterate(loader), start=1):
        with torch.autocast(device.type, enabled=use_amp):
            taps = features.tapped(x.to(device, non_blocking=True))
        f = taps.map.float()  # (B, C, m, m)
        if on_taps is not None:
            on_taps(taps)
        if stats is not None:
            b, c, h, w = f.shape
            flat = f.permute(0, 2, 3, 1).reshape(b, h * w, c)  # (B, m*m, C)
            k = min(samples_per_image, h * w)
            for i in range(b):
                pos = torch.randperm(h * w, generator=gen)[:k].to(f.device)
                stats.update(flat[i, pos])
        if cache is not None:
            cache.write(idx, f)
        if on_batch is not None:
            on_batch(step, steps)
