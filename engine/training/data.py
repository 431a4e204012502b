"""Image paths -> model input tensors, by the one image rule (engine.intake.images), for training and evaluation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from engine.config import Config
from engine.errors import InputFileError
from engine.intake.enhance import enhance
from engine.intake.images import read_image, resize_image


class ImageLoadError(InputFileError):
    """An InputFileError that survives a DataLoader worker.

    The DataLoader re-raises a worker's exception as `type(exc)(formatted_traceback)`; this class
    accepts that single argument and recovers the original "path: reason" message from its last line.
    """

    def __init__(self, path: str | Path, reason: str | None = None) -> None:
        if reason is None:
            lines = [ln for ln in str(path).strip().splitlines() if ln.strip()]
            last = lines[-1] if lines else str(path)
            head, sep, rest = last.partition(": ")
            original = rest if sep and head.split(".")[-1] == type(self).__name__ else last
            path, _, reason = original.partition(": ")
        super().__init__(path, reason)


def enhance_flags(n: int, share: float, seed: int) -> np.ndarray:
    """Which of n training images get enhanced: a fixed, seeded choice of round(share · n)."""
    flags = np.zeros(n, dtype=bool)
    k = int(round(share * n))
    if k > 0:
        flags[np.random.default_rng(seed).choice(n, size=min(k, n), replace=False)] = True
    return flags


class ImageDataset(Dataset):
    """(index, (3, S, S) float32 RGB in [0, 1]) per path, enhanced where `flags` says so."""

    def __init__(self, paths: Sequence[Path], input_size: int, flags: Sequence[bool] | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.input_size = input_size
        self.flags = np.zeros(len(self.paths), dtype=bool) if flags is None else np.asarray(flags, dtype=bool)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        try:
            img = resize_image(read_image(self.paths[i]), self.input_size)  # (S, S, 3) uint8
        except InputFileError as exc:
            raise ImageLoadError(exc.path, exc.reason) from None
        if self.flags[i]:
            img = enhance(img)
        x = torch.from_numpy(np.require(img, requirements=("C", "W"))).permute(2, 0, 1).float().div_(255.0)  # (3, S, S)
        return i, x


def _worker_init(_: int) -> None:
    """Decoding workers stay single-threaded: the parent owns the cores for the model."""
    torch.set_num_threads(1)


def iterate(loader: DataLoader) -> Iterator:
    """The batches of `loader`; if iterating stops early (an unreadable image raised, a consumer
    broke off), its worker processes are stopped at once.

    Otherwise they live on until the exception's traceback is freed, which in a long-lived
    caller can be never: the workers are forks holding every file descriptor the caller had.
    """
    it = iter(loader)
    try:
        yield from it
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)  # multi-process iterators only
        if shutdown is not None:
            shutdown()


def make_loader(paths: Sequence[Path], config: Config, train: bool, batch_size: int | None = None,
                shuffle: bool | None = None) -> DataLoader:
    """Batches of (indices (B,), images (B, 3, S, S)) by the image rule at config.input_size.

    Enhancement (config.enhance): every image at evaluation (train=False), a fixed
    config.enhance_train_share of them at training. `shuffle` defaults to `train`.
    """
    n = len(paths)
    if not config.enhance:
        flags = np.zeros(n, dtype=bool)
    elif train:
        flags = enhance_flags(n, config.enhance_train_share, config.seed)
    else:
        flags = np.ones(n, dtype=bool)
    ds = ImageDataset(paths, config.input_size, flags)
    shuffle = train if shuffle is None else shuffle
    workers = max(0, min(int(config.num_workers), n))
    if workers:
        # OpenCV's thread pool does not survive fork(): a forked worker that touches it can hang
        # forever. Switch it off before forking; the workers provide the decoding parallelism.
        cv2.setNumThreads(0)
    return DataLoader(
        ds,
        batch_size=batch_size or config.batch_size,
        shuffle=shuffle,
        num_workers=workers,
        worker_init_fn=_worker_init if workers else None,
        generator=torch.Generator().manual_seed(int(config.seed)) if shuffle else None,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )
