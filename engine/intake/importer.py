"""Scan a folder of images into an ImportPlan (pure: no database, nothing written).

Every file under the root becomes a usable image (split, label, defect type, mask) or a
Skipped(path relative to the root, reason). Decisions on bad input:
- Hidden entries (.DS_Store, .git), __MACOSX, Thumbs.db, desktop.ini: ignored silently; so are
  files directly in a seed/mvtec root (README, license). An image file elsewhere outside the
  layout folders is reported; other files there are ignored. In an image folder (anywhere in
  a flat import) a non-image file is reported: "not an image file (extension .txt)".
- Mask of the wrong size: the image is kept (NOK, no mask), the mask reported. A mask without
  an image, or of a skipped image, is reported.
- Same bytes twice: the first (train before test, then path order) is kept, the later one is
  "duplicate of <rel path>".
- A symlink (file or folder) resolving outside the root is reported; inside ones are followed.
- Folder names are matched exactly (lowercase), as README's layouts list them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from engine.errors import InputFileError, UserError
from engine.intake.images import IMAGE_EXTENSIONS, ImageInfo, probe_image, read_mask, sha256_file

log = logging.getLogger(__name__)

LAYOUTS = ("auto", "seed", "mvtec", "flat")
_JUNK = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
_SEED_FOLDERS = "train/ok, test/ok, test/nok, test/masks/nok"
_MVTEC_FOLDERS = "train/good, test/good, test/<defect>, ground_truth/<defect>"
_SPLIT_RANK = {"train": 0, "test": 1, None: 2}
_THREADS = max(2, min(4, os.cpu_count() or 2))  # decoding releases the GIL; disks like a few


@dataclass(frozen=True)
class ScannedImage:
    """One usable image and, for NOK images, its validated mask."""

    path: Path  # absolute (resolved) path
    rel_path: str  # relative to the import root, posix
    split: str | None  # "train" | "test" | None (flat)
    label: str  # "ok" | "nok" | "unknown"
    defect_type: str | None
    info: ImageInfo
    mask_path: Path | None = None
    mask_sha256: str | None = None
    mask_pixels: int | None = None  # count of > 127 pixels


@dataclass(frozen=True)
class Skipped:
    """A file not imported, and why (path relative to the import root or archive)."""

    path: str
    reason: str


@dataclass
class ImportPlan:
    """What an import would register; `skipped` is what the user must be told about."""

    root: Path
    layout: str
    images: list[ScannedImage] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def _count(self, split: str | None, label: str) -> int:
        return sum(1 for i in self.images if i.split == split and i.label == label)

    @property
    def train_ok(self) -> int:
        return self._count("train", "ok")

    @property
    def test_ok(self) -> int:
        return self._count("test", "ok")

    @property
    def test_nok(self) -> int:
        return self._count("test", "nok")

    @property
    def unknown(self) -> int:
        return sum(1 for i in self.images if i.label == "unknown")

    @property
    def masks(self) -> int:
        return sum(1 for i in self.images if i.mask_path is not None)

    @property
    def defect_types(self) -> list[str]:
        return sorted({i.defect_type for i in self.images if i.defect_type})

    def counts(self) -> dict[str, int]:
        """The `import --json` "imported" object."""
        return {"train_ok": self.train_ok, "test_ok": self.test_ok, "test_nok": self.test_nok,
                "masks": self.masks, "unknown": self.unknown}


@dataclass(frozen=True)
class _Entry:  # a file's place in the layout, before it is read
    rel: str
    path: Path
    kind: str  # "image" | "mask" | "skip"
    split: str | None = None
    label: str = "unknown"
    defect: str | None = None
    key: tuple[str, str] | None = None  # (folder under nok / defect, stem): image <-> mask
    reason: str = ""


def detect_layout(root: Path) -> str:
    """seed if train/ok, test/ok or test/nok exists; else mvtec if train/good, test/good or
    ground_truth exists; else flat."""
    root = Path(root)
    if any((root / d).is_dir() for d in ("train/ok", "test/ok", "test/nok")):
        return "seed"
    if any((root / d).is_dir() for d in ("train/good", "test/good", "ground_truth")):
        return "mvtec"
    return "flat"


def ensure_allowed_root(root: Path, allowed: list[Path]) -> Path:
    """Resolve `root` and refuse it unless inside one of `allowed` (PREFILTER_QA_IMPORT_ROOTS)."""
    real = Path(root).expanduser().resolve()
    if not any(real.is_relative_to(Path(a).resolve()) for a in allowed):
        roots = ", ".join(str(a) for a in allowed)
        raise UserError(f"{root}: not inside an allowed import root ({roots}); "
                        "set PREFILTER_QA_IMPORT_ROOTS to allow it")
    return real


def _walk(root: Path) -> tuple[list[tuple[str, Path]], list[Skipped]]:
    """Every regular file under root as (rel posix, resolved path); links checked, not trusted."""
    files: list[tuple[str, Path]] = []
    skipped: list[Skipped] = []

    def visit(real_dir: Path, rel: str, ancestors: frozenset[Path]) -> None:
        try:
            entries = sorted(os.scandir(real_dir), key=lambda e: e.name)
        except OSError as e:
            skipped.append(Skipped(rel or ".", f"cannot list folder: {e.strerror or e}"))
            return
        for e in entries:
            if e.name.startswith(".") or e.name in _JUNK:
                continue
            r = f"{rel}/{e.name}" if rel else e.name
            target = Path(e.path)
            if e.is_symlink():
                try:
                    target = target.resolve(strict=True)
                except (OSError, RuntimeError):
                    skipped.append(Skipped(r, "broken symlink"))
                    continue
                if not target.is_relative_to(root):
                    skipped.append(Skipped(r, "symlink escapes the import root"))
                    continue
            if target.is_dir():
                if target in ancestors:
                    skipped.append(Skipped(r, "symlink loop (points to a folder above it)"))
                else:
                    visit(target, r, ancestors | {target})
            elif target.is_file():
                files.append((r, target))
            else:
                skipped.append(Skipped(r, "not a regular file"))

    visit(root, "", frozenset({root}))
    return files, skipped


def _suffix_reason(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return f"not an image file (extension {suffix})" if suffix else "not an image file (no extension)"


def _classify(rel: str, path: Path, layout: str) -> _Entry | None:
    """Where a file sits in the layout; None = ignore silently."""
    parts = rel.split("/")
    stem = PurePosixPath(rel).stem
    is_image = PurePosixPath(rel).suffix.lower() in IMAGE_EXTENSIONS
    if layout == "flat":
        if not is_image:
            return _Entry(rel, path, "skip", reason=_suffix_reason(rel))
        return _Entry(rel, path, "image")
    if len(parts) == 1:
        return None  # README, license.txt ... in the dataset root
    entry: _Entry | None = None
    if layout == "seed":
        head, n = parts[:2], len(parts)
        if head == ["train", "ok"] and n >= 3:
            entry = _Entry(rel, path, "image", "train", "ok")
        elif head == ["test", "ok"] and n >= 3:
            entry = _Entry(rel, path, "image", "test", "ok")
        elif head == ["test", "nok"] and n >= 3:
            entry = _Entry(rel, path, "image", "test", "nok", parts[2] if n >= 4 else None,
                           ("/".join(parts[2:-1]), stem))
        elif parts[:3] == ["test", "masks", "nok"] and n >= 4:
            entry = _Entry(rel, path, "mask", key=("/".join(parts[3:-1]), stem))
        where = _SEED_FOLDERS
    else:  # mvtec
        if parts[0] == "train" and parts[1] == "good" and len(parts) >= 3:
            entry = _Entry(rel, path, "image", "train", "ok")
        elif parts[0] == "test" and parts[1] == "good" and len(parts) >= 3:
            entry = _Entry(rel, path, "image", "test", "ok")
        elif parts[0] == "test" and len(parts) >= 3:
            entry = _Entry(rel, path, "image", "test", "nok", parts[1],
                           ("/".join(parts[1:-1]), stem))
        elif parts[0] == "ground_truth" and len(parts) >= 3:
            if is_image and not stem.endswith("_mask"):
                return _Entry(rel, path, "skip", reason="mask name must end in _mask "
                              f"(expected {stem}_mask.png)")
            entry = _Entry(rel, path, "mask", key=("/".join(parts[1:-1]), stem[: -len("_mask")]))
        where = _MVTEC_FOLDERS
    if entry is None:
        if not is_image:
            return None
        return _Entry(rel, path, "skip", reason=f"outside the {layout} layout folders ({where})")
    if not is_image:
        return _Entry(rel, path, "skip", reason=_suffix_reason(rel))
    return entry


def _read(image: _Entry, mask: _Entry | None) -> tuple[ImageInfo | str, tuple | str | None]:
    """Worker: probe the image, then its mask against the image's size. Errors become reasons."""
    try:
        info: ImageInfo | str = probe_image(image.path)
    except InputFileError as e:
        return e.reason, None
    except Exception as e:  # never let one odd file stop an import
        log.exception("reading %s", image.path)
        return f"unreadable: {e}", None
    if mask is None:
        return info, None
    try:
        m = read_mask(mask.path, expected_hw=(info.height, info.width))
        return info, (sha256_file(mask.path), int(m.sum()))
    except InputFileError as e:
        return info, e.reason
    except Exception as e:
        log.exception("reading %s", mask.path)
        return info, f"unreadable: {e}"


def scan_folder(root: Path, layout: str = "auto",
                progress: Callable[[int, int], None] | None = None) -> ImportPlan:
    """Read every file under `root` once (threads) and decide; deterministic order."""
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r} (expected one of: {', '.join(LAYOUTS)})")
    root_in = Path(root).expanduser()
    if not root_in.exists():
        raise UserError(f"{root_in}: folder not found")
    if not root_in.is_dir():
        raise UserError(f"{root_in}: not a folder")
    root = root_in.resolve()
    if layout == "auto":
        layout = detect_layout(root)

    files, skipped = _walk(root)
    images: list[_Entry] = []
    masks: dict[tuple[str, str], list[_Entry]] = {}
    for rel, path in files:
        entry = _classify(rel, path, layout)
        if entry is None:
            continue
        if entry.kind == "skip":
            skipped.append(Skipped(rel, entry.reason))
        elif entry.kind == "mask":
            masks.setdefault(entry.key, []).append(entry)  # type: ignore[arg-type]
        else:
            images.append(entry)
    images.sort(key=lambda e: (_SPLIT_RANK[e.split], e.rel))

    image_keys = {e.key for e in images if e.key is not None}
    mask_for: dict[tuple[str, str], _Entry] = {}
    for key, entries in sorted(masks.items()):
        entries.sort(key=lambda e: e.rel)
        if key not in image_keys:
            for m in entries:
                skipped.append(Skipped(m.rel, "mask without an image"))
            continue
        mask_for[key] = entries[0]
        for m in entries[1:]:
            skipped.append(Skipped(m.rel, f"another mask for the same image (using {entries[0].rel})"))

    results: list[tuple[ImageInfo | str, tuple | str | None]] = [("", None)] * len(images)
    with ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="import") as pool:
        futures = {pool.submit(_read, e, mask_for.get(e.key) if e.key else None): i
                   for i, e in enumerate(images)}
        for done, fut in enumerate(as_completed(futures), start=1):
            results[futures[fut]] = fut.result()
            if progress is not None:
                progress(done, len(images))

    plan = ImportPlan(root=root, layout=layout, skipped=skipped)
    first_with: dict[str, str] = {}
    for e, (info, mres) in zip(images, results):
        mask = mask_for.get(e.key) if e.key else None
        if isinstance(info, str):
            skipped.append(Skipped(e.rel, info))
        elif info.sha256 in first_with:
            skipped.append(Skipped(e.rel, f"duplicate of {first_with[info.sha256]}"))
            info = "duplicate"
        if isinstance(info, str):
            if mask is not None:
                skipped.append(Skipped(mask.rel, f"mask of a skipped image ({e.rel})"))
            continue
        first_with[info.sha256] = e.rel
        m_path = m_sha = m_pixels = None
        if isinstance(mres, str):
            skipped.append(Skipped(mask.rel, mres))  # type: ignore[union-attr]
        elif mres is not None and mask is not None:
            m_path, (m_sha, m_pixels) = mask.path, mres
        plan.images.append(ScannedImage(e.path, e.rel, e.split, e.label, e.defect, info,
                                        m_path, m_sha, m_pixels))
    plan.skipped.sort(key=lambda s: (s.path, s.reason))
    return plan
