"""The one image rule (DESIGN.md "Images"): how every file a user gives us becomes pixels.

Import, training, evaluation, prediction and thumbnails all read images through this module so
that a model never sees pixels decoded differently from the ones it was trained or judged on.

The rule, in order:
1. Decode fully with Pillow (truncated files are errors, never partially loaded).
2. Refuse more than MAX_PIXELS pixels (decompression bombs) before decoding.
3. Apply the EXIF orientation (ImageOps.exif_transpose); sizes reported are the rotated ones.
4. Convert to RGB: 16-bit ("I;16*", and "I" taken as 16-bit) scaled by the full range of the
   data type, 0..65535 -> 0..255 (value / 257, rounded), never by the image's own min/max, so
   the same sensor value always gives the same 8-bit value; float ("F") taken as 0..255 and
   clipped; palette, grayscale, LA, RGBA, CMYK ... converted by Pillow, alpha dropped (not
   composited over a background).
5. Resize (stretch) to the model input: INTER_AREA when shrinking both sides, else bilinear.
Masks: any mode, converted to 8-bit grayscale ("L", 16-bit scaled as above), EXIF orientation
applied, binarised at > 127.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from engine.errors import InputFileError

log = logging.getLogger(__name__)

MAX_PIXELS_ENV = "PREFILTER_QA_MAX_PIXELS"
_DEFAULT_MAX_PIXELS = 100_000_000


def _max_pixels_from_env() -> int:
    raw = os.environ.get(MAX_PIXELS_ENV)
    if not raw:
        return _DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
        if value <= 0:
            raise ValueError(raw)
        return value
    except ValueError:
        log.warning("%s=%r is not a positive integer; using %d", MAX_PIXELS_ENV, raw,
                    _DEFAULT_MAX_PIXELS)
        return _DEFAULT_MAX_PIXELS


# Decompression-bomb limit (pixels, after nothing: width x height of the header). Read at call
# time from this module attribute, so tests may monkeypatch it.
MAX_PIXELS: int = _max_pixels_from_env()
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
IMAGE_RULE: str = ("exif-transpose; 16-bit scaled by full range (v/257) to 8-bit; "
                   "float clipped 0..255; RGB (alpha dropped); "
                   "stretch to input (INTER_AREA shrinking, else bilinear)")

# Formats we decode. Restricting them keeps Pillow away from exotic plugins (EPS runs
# Ghostscript) for files that merely carry an image extension.
_FORMATS = ("PNG", "JPEG", "BMP", "DIB", "TIFF", "WEBP", "GIF")  # JPEG covers MPO
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")

# Never decode half a file; Pillow's own bomb check follows our limit (we check first anyway,
# so its warning is redundant and only noise).
ImageFile.LOAD_TRUNCATED_IMAGES = False
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@dataclass(frozen=True)
class ImageInfo:
    """What the importer stores per image; width/height are after EXIF orientation."""

    width: int
    height: int
    mode: str  # Pillow mode of the file as stored ("L", "RGB", "I;16", ...)
    sha256: str
    size_bytes: int


def sha256_file(path: Path) -> str:
    """Content hash that identifies an image wherever it lives."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_bytes(path: Path) -> bytes:
    """File bytes, with missing/unreadable/empty files turned into InputFileError."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputFileError(path, "file not found") from None
    except IsADirectoryError:
        raise InputFileError(path, "is a folder, not a file") from None
    except OSError as e:
        raise InputFileError(path, f"cannot read file: {e.strerror or e}") from None
    if not data:
        raise InputFileError(path, "empty file (0 bytes)")
    return data


def _pixel_limit_error(path: Path, n: int | str) -> InputFileError:
    return InputFileError(path, f"image has {n} pixels, more than the limit {MAX_PIXELS} "
                                f"({MAX_PIXELS_ENV})")


def _bomb_pixels(e: Exception) -> str:
    """Pixel count from Pillow's DecompressionBombError message (ours wins when both apply)."""
    m = re.search(r"\((\d+) pixels\)", str(e))
    return m.group(1) if m else "too many"


def open_image(data: bytes, path: Path, draft: tuple[int, int] | None = None) -> Image.Image:
    """Open + bomb-check + fully decode `data` (the bytes of `path`), before EXIF orientation.

    `draft` lets JPEG decoding pick a reduced scale at least that big (thumbnails).
    """
    try:
        im = Image.open(io.BytesIO(data), formats=_FORMATS)
    except UnidentifiedImageError:
        raise InputFileError(path, "not an image (unrecognised format)") from None
    except Image.DecompressionBombError as e:
        raise _pixel_limit_error(path, _bomb_pixels(e)) from None
    except Exception as e:  # Pillow raises many types on malformed headers
        raise InputFileError(path, f"truncated or corrupt image: {e}") from None
    w, h = im.size
    if w <= 0 or h <= 0:
        raise InputFileError(path, f"truncated or corrupt image: size {w}x{h}")
    if w * h > MAX_PIXELS:
        raise _pixel_limit_error(path, w * h)
    if draft is not None and im.format in ("JPEG", "MPO"):
        im.draft(None, draft)
    try:
        im.load()
    except Image.DecompressionBombError:
        raise _pixel_limit_error(path, w * h) from None
    except Exception as e:  # OSError "image file is truncated", SyntaxError, struct.error...
        raise InputFileError(path, f"truncated or corrupt image: {e}") from None
    return im


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block must not make a good image unusable
        return 1


def exif_transpose(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block means 'no orientation'."""
    if _orientation(im) == 1:
        return im
    try:
        return ImageOps.exif_transpose(im)
    except Exception as e:  # pragma: no cover - depends on malformed EXIF variants
        log.warning("ignoring unusable EXIF orientation: %s", e)
        return im


def _sixteen_to_8(arr: np.ndarray) -> np.ndarray:
    """Full-range scaling of the data type (0..65535 -> 0..255), not of the image's min/max."""
    a = np.clip(arr.astype(np.float32), 0, 65535)
    return np.round(a / 257.0).astype(np.uint8)


def to_rgb(im: Image.Image, path: Path | str = "image") -> Image.Image:
    """The mode part of the rule: any mode -> 8-bit RGB, alpha dropped."""
    if im.mode == "RGB":
        return im
    if im.mode in _SIXTEEN_BIT:
        return Image.fromarray(_sixteen_to_8(np.asarray(im))).convert("RGB")
    if im.mode == "F":
        a = np.round(np.clip(np.asarray(im, dtype=np.float32), 0, 255)).astype(np.uint8)
        return Image.fromarray(a).convert("RGB")
    try:
        if im.mode in ("P", "PA"):  # via RGBA so palette transparency is dropped quietly
            return im.convert("RGBA").convert("RGB")
        return im.convert("RGB")
    except (ValueError, OSError) as e:
        raise InputFileError(path, f"unsupported image mode {im.mode}: {e}") from None


def to_gray8(im: Image.Image) -> Image.Image:
    """Any mode -> 8-bit "L" (16-bit scaled by full range), for masks."""
    if im.mode in _SIXTEEN_BIT:
        return Image.fromarray(_sixteen_to_8(np.asarray(im)))
    if im.mode == "F":
        return Image.fromarray(np.round(np.clip(np.asarray(im), 0, 255)).astype(np.uint8))
    if im.mode in ("P", "PA"):
        return im.convert("RGBA").convert("L")
    return im.convert("L")


def probe_image(path: Path) -> ImageInfo:
    """Fully decode once (catches truncation) and describe the file; raises InputFileError."""
    path = Path(path)
    data = read_bytes(path)
    im = open_image(data, path)
    w, h = im.size
    if _orientation(im) in (5, 6, 7, 8):  # 90/270 degree rotations swap the sides
        w, h = h, w
    return ImageInfo(width=w, height=h, mode=im.mode,
                     sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def read_image(path: Path) -> np.ndarray:
    """The image after the rule, (H, W, 3) uint8 RGB."""
    path = Path(path)
    im = exif_transpose(open_image(read_bytes(path), path))
    return np.ascontiguousarray(np.asarray(to_rgb(im, path), dtype=np.uint8))  # (H, W, 3)


def read_mask(path: Path, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """A ground-truth mask, (H, W) bool (> 127); must match its image's (H, W) if given."""
    path = Path(path)
    im = exif_transpose(open_image(read_bytes(path), path))
    mask = np.asarray(to_gray8(im), dtype=np.uint8) > 127  # (H, W)
    if expected_hw is not None and tuple(mask.shape) != tuple(expected_hw):
        mh, mw = mask.shape
        eh, ew = expected_hw
        raise InputFileError(path, f"mask is {mw}×{mh} but its image is {ew}×{eh}")
    return mask


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def resize_image(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Stretch (no aspect kept) to (H, W) = size; INTER_AREA if shrinking both sides."""
    h, w = _hw(size)
    if img.shape[:2] == (h, w):
        return img
    interp = cv2.INTER_AREA if h <= img.shape[0] and w <= img.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)  # cv2 wants (W, H)


def resize_mask(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize, so a mask stays binary; keeps the dtype (bool in, bool out)."""
    h, w = _hw(size)
    if mask.shape[:2] == (h, w):
        return mask
    src = mask.astype(np.uint8) if mask.dtype == bool else mask
    out = cv2.resize(src, (w, h), interpolation=cv2.INTER_NEAREST)
    return out.astype(bool) if mask.dtype == bool else out
