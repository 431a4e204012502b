"""Decoding for evaluation and prediction: like `engine.training.data`, but an unreadable file is a
per-item error instead of an exception that would abort the whole loader.

Each item is a dict; `collate` packs a batch into one uint8 array and keeps strings/originals
as lists.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from engine.config import Config
from engine.errors import InputFileError
from engine.intake.enhance import enhance
from engine.intake.images import read_image, read_mask, resize_image, resize_mask


class EvalDataset(Dataset):
    """Per path: the resized image (S, S, 3) uint8 or an error, and the resized mask if any.

    Items stay numpy uint8: `collate` writes them into one batch array, and the float
    conversion happens once per batch in `model_input` (on the model's device).
    """

    def __init__(self, paths: Sequence[Path], input_size: int, enhanced: bool = False,
                 mask_paths: Sequence[Path | None] | None = None, keep_original: bool = False
                 ) -> None:
        self.paths = [Path(p) for p in paths]
        self.size = int(input_size)
        self.enhanced = enhanced
        self.mask_paths = list(mask_paths) if mask_paths is not None else [None] * len(self.paths)
        self.keep_original = keep_original

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        s = self.size
        item = {"i": i, "img": None, "err": "", "h": 0, "w": 0, "mask": None, "mask_path": "",
                "mask_err": ""}
        try:
            orig = read_image(self.paths[i])  # (H, W, 3) uint8
        except InputFileError as exc:
            item["err"] = exc.reason
            return item
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the evaluation
            item["err"] = f"cannot read image: {type(exc).__name__}: {exc}"
            return item
        item["h"], item["w"] = orig.shape[:2]
        img = resize_image(orig, s)  # (S, S, 3) uint8
        item["img"] = enhance(img) if self.enhanced else img
        if self.keep_original:
            item["orig"] = orig
        mp = self.mask_paths[i]
        if mp is not None:
            item["mask_path"] = str(mp)
            try:
                item["mask"] = resize_mask(read_mask(Path(mp), expected_hw=orig.shape[:2]), s)  # (S, S)
            except InputFileError as exc:
                item["mask_err"] = exc.reason
            except Exception as exc:  # noqa: BLE001
                item["mask_err"] = f"cannot read mask: {type(exc).__name__}: {exc}"
        return item


def collate(batch: list[dict], size: int) -> dict:
    """One uint8 array per batch (zeros where an image failed); strings and originals stay lists.

    "x" is (B, 3, S, S) uint8 viewing (B, S, S, 3) memory, i.e. channels-last strides: the
    layout the models run fastest in (`prepare_model`), with no copy.
    """
    n = len(batch)
    imgs = np.zeros((n, size, size, 3), np.uint8)  # (B, S, S, 3)
    masks = np.zeros((n, size, size), bool)  # (B, S, S)
    for k, b in enumerate(batch):
        if b["img"] is not None:
            imgs[k] = b["img"]
        if b["mask"] is not None:
            masks[k] = b["mask"]
    out = {
        "i": torch.tensor([b["i"] for b in batch]),
        "x": torch.from_numpy(imgs).permute(0, 3, 1, 2),  # (B, 3, S, S) uint8
        "h": torch.tensor([b["h"] for b in batch]),
        "w": torch.tensor([b["w"] for b in batch]),
        "has_mask": torch.tensor([b["mask"] is not None for b in batch]),
        "mask": torch.from_numpy(masks),  # (B, S, S) bool
    }
    for k in ("err", "mask_path", "mask_err"):
        out[k] = [b[k] for b in batch]
    if any("orig" in b for b in batch):
        out["orig"] = [b.get("orig") for b in batch]
    return out


class ThreadedLoader:
    """In-order batches, each decoded and assembled by one thread of a pool, `prefetch` ahead.

    Threads, not DataLoader processes: Pillow, cv2 and numpy release the GIL while decoding,
    workers start instantly (no torch import per process), and there is no fork at all (a
    forked worker that calls cv2.setNumThreads after the parent used OpenCV's thread pool
    deadlocks; measured here). A whole batch per task keeps the batch assembly (`collate`) off
    the thread that runs the model.
    """

    def __init__(self, dataset: EvalDataset, batch_size: int, workers: int, prefetch: int = 2
                 ) -> None:
        self.dataset, self.batch_size = dataset, max(1, int(batch_size))
        self.workers, self.prefetch = max(0, int(workers)), max(1, int(prefetch))

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def _batch(self, start: int) -> dict:
        stop = min(start + self.batch_size, len(self.dataset))
        return collate([self.dataset[i] for i in range(start, stop)], self.dataset.size)

    def __iter__(self) -> Iterator[dict]:
        starts = range(0, len(self.dataset), self.batch_size)
        if self.workers == 0:
            for s in starts:
                yield self._batch(s)
            return
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="decode")
        queued: deque[Future] = deque()
        ahead = max(self.prefetch, self.workers)  # keep every thread busy
        try:
            for s in starts:
                queued.append(pool.submit(self._batch, s))
                if len(queued) > ahead:
                    yield queued.popleft().result()
            while queued:
                yield queued.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def prepare_model(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode with channels-last (NHWC) conv weights, the layout oneDNN / cuDNN run fastest.

    Measured on the 2-core CPU (bench.speed, forward variants): AE 1.2-2x, DFR 1.3-2x over
    contiguous NCHW; results equal up to float rounding.
    """
    return model.eval().to(memory_format=torch.channels_last)


COMPILE_ENV = "PREFILTER_QA_COMPILE"  # "1": torch.compile the model for evaluation / prediction


def maybe_compile(model: torch.nn.Module, compile: bool | None) -> torch.nn.Module:
    """`torch.compile(model)` when asked (or $PREFILTER_QA_COMPILE=1), else the model itself.

    Off by default: on the 2-core CPU compiling costs ~45 s (AE) to ~100 s (DFR) under load
    for a 1.1x (AE) to 1.8x (DFR) faster forward, so it pays only for evaluations of thousands
    of images (BENCHMARKS.md). Call it after `set_roi`: a later ROI change recompiles.
    """
    if compile is None:
        compile = os.environ.get(COMPILE_ENV, "") == "1"
    if not compile:
        return model
    return torch.compile(model)


def model_input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, 3, S, S) batch -> float in [0, 1] on `device`, channels-last (what `prepare_model` wants).

    A uint8 batch (from `collate`) is copied to the device as bytes (4x less to move)
    and converted there, in one pass, by the same rule as training (`/ 255`).
    """
    if x.dtype == torch.uint8:
        x = x.to(device, non_blocking=True).float().div_(255.0)  # keeps the NHWC strides
    return x.to(device, non_blocking=True, memory_format=torch.channels_last)


def make_eval_loader(paths: Sequence[Path], config: Config, batch_size: int,
                     mask_paths: Sequence[Path | None] | None = None,
                     keep_original: bool = False) -> ThreadedLoader:
    """In-order batches; `config.num_workers` decoding threads (0 = in the caller's thread)."""
    ds = EvalDataset(paths, int(config.input_size), bool(config.enhance),
                     mask_paths, keep_original)
    workers = max(0, min(int(config.num_workers), len(ds)))
    return ThreadedLoader(ds, batch_size, workers)
