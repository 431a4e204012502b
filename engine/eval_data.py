"""Decoding for evaluation and prediction: like `engine.data`, but an unreadable file is a
per-item error instead of an exception that would abort the whole loader.

Each item is a dict; `collate` stacks tensors and keeps strings/originals as lists.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from engine.enhance import enhance
from engine.errors import InputFileError
from engine.images import read_image, read_mask, resize_image, resize_mask


class EvalDataset(Dataset):
    """Per path: the model input (3, S, S) in [0, 1] or an error, and the resized mask if any."""

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
        item = {"i": i, "x": torch.zeros(3, s, s), "err": "", "h": 0, "w": 0,
                "has_mask": False, "mask": torch.zeros(s, s, dtype=torch.bool),
                "mask_path": "", "mask_err": ""}
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
        if self.enhanced:
            img = enhance(img)
        img = img if img.flags.writeable else img.copy()  # torch wants writable memory
        item["x"] = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)
        if self.keep_original:
            item["orig"] = orig
        mp = self.mask_paths[i]
        if mp is not None:
            item["mask_path"] = str(mp)
            try:
                m = resize_mask(read_mask(Path(mp), expected_hw=orig.shape[:2]), s)  # (S, S)
                item["mask"], item["has_mask"] = torch.from_numpy(m), True
            except InputFileError as exc:
                item["mask_err"] = exc.reason
            except Exception as exc:  # noqa: BLE001
                item["mask_err"] = f"cannot read mask: {type(exc).__name__}: {exc}"
        return item


def collate(batch: list[dict]) -> dict:
    """Stack tensors; strings and originals (different sizes) stay lists."""
    out = {
        "i": torch.tensor([b["i"] for b in batch]),
        "x": torch.stack([b["x"] for b in batch]),  # (B, 3, S, S)
        "h": torch.tensor([b["h"] for b in batch]),
        "w": torch.tensor([b["w"] for b in batch]),
        "has_mask": torch.tensor([b["has_mask"] for b in batch]),
        "mask": torch.stack([b["mask"] for b in batch]),  # (B, S, S) bool
    }
    for k in ("err", "mask_path", "mask_err"):
        out[k] = [b[k] for b in batch]
    if "orig" in batch[0]:
        out["orig"] = [b.get("orig") for b in batch]
    return out


class ThreadedLoader:
    """In-order batches decoded by a thread pool, `prefetch` batches ahead of the model.

    Threads, not DataLoader processes: Pillow, cv2 and torch release the GIL while decoding,
    workers start instantly (no torch import per process), and there is no fork at all (a
    forked worker that calls cv2.setNumThreads after the parent used OpenCV's thread pool
    deadlocks; measured here).
    """

    def __init__(self, dataset: EvalDataset, batch_size: int, workers: int, prefetch: int = 2
                 ) -> None:
        self.dataset, self.batch_size = dataset, max(1, int(batch_size))
        self.workers, self.prefetch = max(0, int(workers)), max(1, int(prefetch))

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[dict]:
        n, bs = len(self.dataset), self.batch_size
        starts = range(0, n, bs)
        if self.workers == 0:
            for s in starts:
                yield collate([self.dataset[i] for i in range(s, min(s + bs, n))])
            return
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="decode")
        queued: deque[list[Future]] = deque()
        try:
            for s in starts:
                queued.append([pool.submit(self.dataset.__getitem__, i)
                               for i in range(s, min(s + bs, n))])
                if len(queued) > self.prefetch:
                    yield collate([f.result() for f in queued.popleft()])
            while queued:
                yield collate([f.result() for f in queued.popleft()])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def make_eval_loader(paths: Sequence[Path], config: object, batch_size: int,
                     mask_paths: Sequence[Path | None] | None = None,
                     keep_original: bool = False) -> ThreadedLoader:
    """In-order batches; `config.num_workers` decoding threads (0 = in the caller's thread)."""
    ds = EvalDataset(paths, int(config.input_size), bool(getattr(config, "enhance", False)),
                     mask_paths, keep_original)
    workers = max(0, min(int(getattr(config, "num_workers", 0)), len(ds)))
    return ThreadedLoader(ds, batch_size, workers)
