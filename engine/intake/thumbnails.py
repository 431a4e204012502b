"""Disk cache of grid thumbnails, keyed by content hash, so a page of 48 renders in well under
a second after its first visit.

- Key: the image's sha256 (+ the mask's sha256 when a mask overlay is drawn) and the size; a
  thumbnail therefore always shows the bytes that were registered, and is written once
  (atomically) and never invalidated. Layout: cache_dir/thumbs/<sha[:2]>/<sha>-<size>[-m<mask>].jpg
- Same image rule as everything else (engine.intake.images): EXIF orientation, 16-bit full range, RGB.
  JPEGs are decoded at reduced scale (PIL draft) because a 160 px thumbnail needs no more.
- A source that is missing, changed (its bytes no longer hash to the registered sha256) or
  unreadable never raises: get_thumbnail returns a shared placeholder image saying so, and
  caches nothing under the image's key, so a restored file gets its real thumbnail next time.
  The dashboard reports the file itself (a moved or changed file is reported, never silently used).
"""

from __future__ import annotations

import hashlib
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from engine.errors import InputFileError
from engine.fsutil import atomic_write
from engine.intake.images import exif_transpose, open_image, read_bytes, read_mask, resize_mask, sha256_file, to_rgb

log = logging.getLogger(__name__)

_HEX = re.compile(r"[0-9a-f]{16,64}")
_THREADS = 4  # decoding releases the GIL; more threads than this only contend for the disk
_OVERLAY_RGB = np.array([255, 0, 0], np.float32)  # ground truth drawn in red
_OVERLAY_ALPHA = 0.45
_PLACEHOLDER_TEXT = {"missing": "file missing", "changed": "file changed",
                     "unreadable": "unreadable"}


def thumbnail_path(cache_dir: Path, sha256: str, size: int = 160,
                   mask_sha256: str | None = None) -> Path:
    """Where the thumbnail of these bytes (and mask) at this size lives; nothing is created."""
    for h in (sha256, mask_sha256):
        if h is not None and not _HEX.fullmatch(h):
            raise ValueError(f"not a sha256 hex digest: {h!r}")
    name = f"{sha256}-{int(size)}" + (f"-m{mask_sha256[:16]}" if mask_sha256 else "") + ".jpg"
    return Path(cache_dir) / "thumbs" / sha256[:2] / name


def placeholder_path(cache_dir: Path, kind: str, size: int = 160) -> Path:
    """A grey square saying why there is no thumbnail ("missing", "changed", "unreadable")."""
    out = Path(cache_dir) / "thumbs" / f"_placeholder-{kind}-{int(size)}.png"
    if not out.exists():
        im = Image.new("RGB", (size, size), (200, 200, 200))
        draw = ImageDraw.Draw(im)
        draw.rectangle([0, 0, size - 1, size - 1], outline=(150, 150, 150), width=2)
        text = _PLACEHOLDER_TEXT.get(kind, kind)
        x0, y0, x1, y1 = draw.textbbox((0, 0), text)
        draw.text(((size - (x1 - x0)) / 2, (size - (y1 - y0)) / 2), text, fill=(90, 90, 90))
        atomic_write(out, lambda tmp: im.save(tmp, format="PNG"))
    return out


def _overlay(thumb: Image.Image, mask_path: Path, full_wh: tuple[int, int]) -> Image.Image:
    """Tint the mask's pixels red; the mask must match the full-size image."""
    w, h = full_wh
    mask = read_mask(mask_path, expected_hw=(h, w))  # (H, W) bool
    small = resize_mask(mask, (thumb.height, thumb.width))  # (h, w) bool
    rgb = np.asarray(thumb, dtype=np.float32).copy()  # (h, w, 3)
    rgb[small] = (1 - _OVERLAY_ALPHA) * rgb[small] + _OVERLAY_ALPHA * _OVERLAY_RGB
    return Image.fromarray(np.round(rgb).astype(np.uint8))


def _make(image_path: Path, sha256: str, size: int,
          mask_path: Path | None) -> tuple[Image.Image | None, str]:
    """Decode, shrink, maybe overlay; returns (thumbnail, "") or (None, placeholder kind)."""
    try:
        data = read_bytes(image_path)
    except InputFileError as e:
        return None, "missing" if e.reason == "file not found" else "unreadable"
    if hashlib.sha256(data).hexdigest() != sha256:
        return None, "changed"
    try:
        # with an overlay the mask is checked against the full size, so no reduced decode
        im = open_image(data, image_path, draft=None if mask_path else (size, size))
        rgb = to_rgb(exif_transpose(im), image_path)
    except InputFileError as e:
        log.warning("no thumbnail for %s: %s", image_path, e.reason)
        return None, "unreadable"
    full_wh = rgb.size
    rgb.thumbnail((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    if mask_path is not None:
        try:
            rgb = _overlay(rgb, mask_path, full_wh)
        except InputFileError as e:
            log.warning("no mask overlay for %s: %s", image_path, e)
            return None, "mask"
    return rgb, ""


def get_thumbnail(cache_dir: Path, image_path: Path, sha256: str, size: int = 160,
                  mask_path: Path | None = None, mask_sha256: str | None = None) -> Path:
    """The cached thumbnail (created once, atomically), else a placeholder; never raises for a
    bad source. With `mask_path` the ground truth is tinted red (mask_sha256 computed if None);
    an unusable mask falls back to the plain thumbnail."""
    if mask_path is not None and mask_sha256 is None:
        try:
            mask_sha256 = sha256_file(Path(mask_path))
        except OSError:
            mask_path = None
    out = thumbnail_path(cache_dir, sha256, size, mask_sha256 if mask_path else None)
    if out.exists():
        return out
    thumb, kind = _make(Path(image_path), sha256, size, Path(mask_path) if mask_path else None)
    if kind == "mask":
        return get_thumbnail(cache_dir, image_path, sha256, size)
    if thumb is None:
        return placeholder_path(cache_dir, kind, size)
    atomic_write(out, lambda tmp: thumb.save(tmp, format="JPEG", quality=85))
    return out


def get_thumbnails(cache_dir: Path, items: list[tuple[Path, str]], size: int = 160) -> list[Path]:
    """Thumbnails of a page of (image path, sha256), in order; only missing ones are decoded,
    in a thread pool."""
    out: list[Path | None] = [None] * len(items)
    todo: list[int] = []
    for i, (_, sha) in enumerate(items):
        p = thumbnail_path(cache_dir, sha, size)
        if p.exists():
            out[i] = p
        else:
            todo.append(i)
    if todo:
        with ThreadPoolExecutor(max_workers=min(_THREADS, len(todo)),
                                thread_name_prefix="thumbs") as pool:
            futures = {i: pool.submit(get_thumbnail, cache_dir, items[i][0], items[i][1], size)
                       for i in todo}
            for i, fut in futures.items():
                out[i] = fut.result()
    return [p for p in out if p is not None]
