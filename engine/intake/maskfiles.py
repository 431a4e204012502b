"""Mask and ROI files on disk: PNG 0/255, one new file per saved version, written atomically."""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from engine.fsutil import atomic_write_bytes
from engine.intake.images import read_mask


def encode_mask(mask: np.ndarray) -> bytes:
    """(H, W) bool -> PNG bytes with 0/255 pixels."""
    buf = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def write_mask_file(folder: Path, mask: np.ndarray) -> tuple[Path, str, int]:
    """Write a new mask file (unique name: saved versions are never overwritten).

    Returns (path, sha256, pixel count). The caller records it in the database and deletes the
    file if that fails (e.g. a conflicting save).
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    data = encode_mask(mask.astype(bool))
    path = folder / f"{uuid.uuid4().hex}.png"
    atomic_write_bytes(path, data)
    return path, hashlib.sha256(data).hexdigest(), int(mask.astype(bool).sum())


def image_mask_dir(masks_root: Path, image_id: int) -> Path:
    return masks_root / str(image_id)


def roi_dir(masks_root: Path, dataset_id: int) -> Path:
    return masks_root / "roi" / str(dataset_id)


def load_mask_file(path: str | Path | None, hw: tuple[int, int]) -> np.ndarray:
    """The stored mask as (H, W) bool; an absent path (cleared mask) is all False."""
    if not path:
        return np.zeros(hw, dtype=bool)
    return read_mask(Path(path), expected_hw=hw)
