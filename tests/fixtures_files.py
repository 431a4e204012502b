"""Makers of good, unusual and bad input files, shared by engine, CLI and dashboard tests.

Every maker writes one file (or folder tree) and returns its path. Images are small (64² by
default) and deterministic (seeded), so tests stay fast and repeatable.
"""

from __future__ import annotations

import io
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _pixels(size: tuple[int, int], seed: int, channels: int = 3) -> np.ndarray:
    """Smooth gradient + seeded noise: distinct content per seed (no accidental duplicates)."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (xx * 255 // max(w - 1, 1) + yy * 64 // max(h - 1, 1)) % 256
    img = np.stack([base, (base + 85) % 256, (base + 170) % 256][:channels], axis=-1)
    img = img + rng.integers(-20, 21, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)  # (H, W, C)


def _write(path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def make_good_png(path: Path, size: tuple[int, int] = (64, 64), mode: str = "RGB",
                  seed: int = 0) -> Path:
    """An ordinary image; size is (W, H); format from the suffix (png, jpg, bmp, tif, webp)."""
    path = _write(path)
    im = Image.fromarray(_pixels(size, seed)).convert(mode)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        im.convert("RGB" if mode not in ("L", "RGB", "CMYK") else mode).save(path, quality=95)
    else:
        im.save(path)
    return path


def make_good_jpeg(path: Path, size: tuple[int, int] = (64, 64), seed: int = 0) -> Path:
    """A baseline RGB JPEG."""
    path = _write(path)
    Image.fromarray(_pixels(size, seed)).save(path, format="JPEG", quality=95)
    return path


def make_16bit_png(path: Path, size: tuple[int, int] = (64, 48), value: int = 65535) -> Path:
    """16-bit grayscale: left half 0, right half `value` (so scaling is checkable)."""
    path = _write(path)
    w, h = size
    a = np.zeros((h, w), dtype=np.uint16)
    a[:, w // 2:] = value
    Image.fromarray(a).save(path)  # Pillow writes mode I;16 as a 16-bit PNG
    return path


def make_rgba_png(path: Path, size: tuple[int, int] = (64, 64), seed: int = 1) -> Path:
    """RGBA with a fully transparent half (alpha must be dropped, colours kept)."""
    path = _write(path)
    rgba = np.concatenate([_pixels(size, seed), np.full((size[1], size[0], 1), 255, np.uint8)],
                          axis=-1)
    rgba[:, : size[0] // 2, 3] = 0
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def make_palette_png(path: Path, size: tuple[int, int] = (64, 64), seed: int = 2) -> Path:
    """Palette ("P") image with a transparent colour index."""
    path = _write(path)
    im = Image.fromarray(_pixels(size, seed)).quantize(16)
    im.save(path, transparency=0)
    return path


def make_gray_png(path: Path, size: tuple[int, int] = (64, 64), seed: int = 3) -> Path:
    """8-bit grayscale ("L")."""
    path = _write(path)
    Image.fromarray(_pixels(size, seed, channels=1)[..., 0], "L").save(path)
    return path


def make_exif_rotated_jpeg(path: Path, size: tuple[int, int] = (80, 40),
                           orientation: int = 6) -> Path:
    """Stored as `size` (W, H) with EXIF orientation 6 (rotate 90° CW to display): shown H×W.

    The stored top-left 10×10 block is red, so after the rule it must be at the top-right.
    """
    path = _write(path)
    w, h = size
    a = np.full((h, w, 3), 128, np.uint8)
    a[:10, :10] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a).save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return path


def make_truncated_jpeg(path: Path, size: tuple[int, int] = (128, 128),
                        keep: float = 0.5) -> Path:
    """A JPEG cut after `keep` of its bytes (header intact, scan data missing)."""
    path = _write(path)
    buf = io.BytesIO()
    Image.fromarray(_pixels(size, 4)).save(buf, format="JPEG", quality=95)
    data = buf.getvalue()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_truncated_png(path: Path, size: tuple[int, int] = (128, 128)) -> Path:
    """A PNG cut in the middle of its image data."""
    path = _write(path)
    buf = io.BytesIO()
    Image.fromarray(_pixels(size, 5)).save(buf, format="PNG")
    data = buf.getvalue()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_zero_byte(path: Path) -> Path:
    """An empty file with an image extension."""
    path = _write(path)
    path.write_bytes(b"")
    return path


def make_text_as_png(path: Path) -> Path:
    """A text file wearing an image extension."""
    path = _write(path)
    path.write_text("this is not an image\n", encoding="utf-8")
    return path


def make_bomb_png(path: Path, claimed: tuple[int, int] = (100_000, 100_000)) -> Path:
    """A tiny PNG whose header claims `claimed` (W, H) pixels (10^10 by default).

    Real bomb: a valid IHDR + one small IDAT; Pillow must refuse it from the header alone.
    """
    path = _write(path)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    w, h = claimed
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(b"\x00" * 1024)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))
    return path


def make_mask(path: Path, size: tuple[int, int] = (64, 64), box: tuple[int, int, int, int]
              = (10, 10, 20, 20), mode: str = "L") -> Path:
    """A 0/255 mask (size (W, H)) with box (x0, y0, x1, y1) set; saved in `mode`."""
    path = _write(path)
    w, h = size
    a = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = box
    a[y0:y1, x0:x1] = 255
    if mode == "I;16":  # full-range 16-bit: 65535 is "white"
        Image.fromarray(a.astype(np.uint16) * 257).save(path)
    else:
        Image.fromarray(a, "L").convert(mode).save(path)
    return path


def make_seed_dataset(root: Path, n_train: int = 4, n_test_ok: int = 2,
                      defects: dict[str, int] | None = None, size: tuple[int, int] = (64, 64),
                      masks: bool = True) -> Path:
    """seed layout: train/ok, test/ok, test/nok/<type>, test/masks/nok/<type> (masks .png).

    defects maps defect type -> count; the type "" puts images directly in test/nok.
    """
    root = Path(root)
    defects = {"scratch": 2, "burn": 1} if defects is None else defects
    seed = 100
    for i in range(n_train):
        make_good_png(root / "train" / "ok" / f"ok_{i:03d}.png", size, seed=seed)
        seed += 1
    for i in range(n_test_ok):
        make_good_jpeg(root / "test" / "ok" / f"tok_{i:03d}.jpg", size, seed=seed)
        seed += 1
    for dtype, n in defects.items():
        for i in range(n):
            sub = Path("test/nok") / dtype if dtype else Path("test/nok")
            make_good_png(root / sub / f"nok_{dtype or 'x'}_{i:03d}.png", size, seed=seed)
            seed += 1
            if masks:
                msub = Path("test/masks/nok") / dtype if dtype else Path("test/masks/nok")
                make_mask(root / msub / f"nok_{dtype or 'x'}_{i:03d}.png", size)
    return root


def make_mvtec_dataset(root: Path, n_train: int = 3, n_test_good: int = 2,
                       defects: dict[str, int] | None = None,
                       size: tuple[int, int] = (64, 64)) -> Path:
    """mvtec layout: train/good, test/good, test/<defect>, ground_truth/<defect>/<stem>_mask.png."""
    root = Path(root)
    defects = {"crack": 2, "hole": 1} if defects is None else defects
    seed = 500
    for i in range(n_train):
        make_good_png(root / "train" / "good" / f"{i:03d}.png", size, seed=seed)
        seed += 1
    for i in range(n_test_good):
        make_good_png(root / "test" / "good" / f"{i:03d}.png", size, seed=seed)
        seed += 1
    for dtype, n in defects.items():
        for i in range(n):
            make_good_png(root / "test" / dtype / f"{i:03d}.png", size, seed=seed)
            seed += 1
            make_mask(root / "ground_truth" / dtype / f"{i:03d}_mask.png", size)
    (root / "license.txt").write_text("CC BY-NC-SA 4.0\n", encoding="utf-8")
    return root


def _png_bytes(size: tuple[int, int] = (32, 32), seed: int = 7) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_pixels(size, seed)).save(buf, format="PNG")
    return buf.getvalue()


def make_zip_slip(path: Path) -> Path:
    """Archive with one good member and members escaping by '..', absolute path and symlink."""
    path = _write(path)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("good/ok.png", _png_bytes(seed=8))
        zf.writestr("../evil.png", _png_bytes(seed=9))
        zf.writestr("/tmp/abs_evil.png", _png_bytes(seed=10))
        zf.writestr("a/../../evil2.png", _png_bytes(seed=11))
        link = zipfile.ZipInfo("link.png")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    return path


def make_zip_bomb(path: Path, member_bytes: int = 50 * 1024**2, members: int = 1) -> Path:
    """Archive of highly compressible members (zeros), each `member_bytes` when inflated.

    Default: one 50 MiB member of ~50 KiB compressed (ratio ~1000:1).
    """
    path = _write(path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(members):
            with zf.open(f"bomb_{i}.bmp", "w", force_zip64=True) as fh:
                chunk = b"\x00" * (1 << 20)
                left = member_bytes
                while left > 0:
                    fh.write(chunk[: min(left, len(chunk))])
                    left -= len(chunk)
    return path


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    """An ordinary archive of name -> bytes (use good_png_bytes() for image members)."""
    path = _write(path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def good_png_bytes(size: tuple[int, int] = (32, 32), seed: int = 7) -> bytes:
    """Bytes of a small valid PNG (distinct per seed)."""
    return _png_bytes(size, seed)
