"""The synthetic demo dataset the app shows on first start (`prefilter-qa demo`).

Writes pre-filter-like parts (see `engine.demo.render`) in the "seed" import layout:

    OUT/train/ok/*.png   OUT/test/ok/*.png   OUT/test/nok/<type>/*.png
    OUT/test/masks/nok/<type>/<same stem>.png      (0/255, single channel)
    OUT/demo.json                                   (spec + counts; written last)

Deterministic: every image has its own RNG seeded from (seed, split, index), so the same spec
gives byte-identical files and a larger count leaves the earlier images unchanged. The set is
built in a temp folder beside OUT and moved into place at the end, so OUT is never half-written;
a second call with the same spec finds `demo.json` and returns at once.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from engine.demo.render import DEFECT_TYPES, MAX_AREA, MIN_AREA, RenderedPart, render_part
from engine.errors import UserError
from engine.fsutil import atomic_write_text

__all__ = ["DEFECT_TYPES", "DemoSpec", "DemoSummary", "DemoError", "generate_demo", "render_part",
           "RenderedPart", "MIN_AREA", "MAX_AREA", "MANIFEST", "image_rng"]

log = logging.getLogger(__name__)

MANIFEST = "demo.json"
GENERATOR_VERSION = 1  # bump whenever the renderer's output changes: old demo folders are rebuilt
_SPLIT_CODES = {"train_ok": 0, "test_ok": 1, "test_nok": 2}


class DemoError(UserError):
    """A demo spec or output folder that cannot be used."""


@dataclass(frozen=True)
class DemoSpec:
    """What to generate; the defaults are the app's embedded demo dataset."""

    size: int = 256  # image side in px (square RGB); the CPU model presets run at 256²
    n_train_ok: int = 150  # OK training images: enough for AE/DFR to learn the nuisance variation
    n_test_ok: int = 40  # OK test images
    n_test_nok: int = 40  # NOK test images, cycling scratch, burn, missing
    seed: int = 0  # base seed; every image's RNG derives from (seed, split, index)


@dataclass(frozen=True)
class DemoSummary:
    """What is on disk after `generate_demo` (counts as the importer will see them)."""

    root: Path
    train_ok: int
    test_ok: int
    test_nok: int
    masks: int
    per_defect: dict[str, int] = field(default_factory=dict)


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The RNG of one image: independent of how many other images are generated."""
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_CODES[split], index]))


def defect_of(index: int) -> str:
    """Defect type of the index-th NOK test image (round robin, so types stay balanced)."""
    return DEFECT_TYPES[index % len(DEFECT_TYPES)]


def _validate(spec: DemoSpec) -> None:
    if not 32 <= spec.size <= 2048:
        raise DemoError(f"demo size must be between 32 and 2048 px, got {spec.size}")
    if spec.n_train_ok < 1:
        raise DemoError(f"the demo needs at least one OK training image, got {spec.n_train_ok}")
    if spec.n_test_ok < 0 or spec.n_test_nok < 0:
        raise DemoError(f"test counts must be >= 0, got {spec.n_test_ok} OK and {spec.n_test_nok} NOK")
    if spec.seed < 0:
        raise DemoError(f"demo seed must be >= 0, got {spec.seed}")


def _png(path: Path, array: np.ndarray) -> None:
    """Encode with fixed settings (byte-identical across runs; level 1: noisy images barely shrink)."""
    img = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - encoding a uint8 array does not fail
        raise DemoError(f"{path}: PNG encoding failed")
    path.write_bytes(buf.tobytes())


def _summary(root: Path, spec: DemoSpec) -> DemoSummary:
    per_defect = {t: 0 for t in DEFECT_TYPES}
    for i in range(spec.n_test_nok):
        per_defect[defect_of(i)] += 1
    return DemoSummary(root=root, train_ok=spec.n_train_ok, test_ok=spec.n_test_ok,
                       test_nok=spec.n_test_nok, masks=spec.n_test_nok, per_defect=per_defect)


def _manifest(spec: DemoSpec, summary: DemoSummary) -> dict:
    return {"generator": "prefilter-qa demo", "version": GENERATOR_VERSION, "spec": asdict(spec),
            "counts": {"train_ok": summary.train_ok, "test_ok": summary.test_ok,
                       "test_nok": summary.test_nok, "masks": summary.masks},
            "per_defect": summary.per_defect}


def _is_complete(out_dir: Path, spec: DemoSpec, summary: DemoSummary) -> bool:
    """True when out_dir already holds this exact demo (manifest matches and files are there)."""
    try:
        found = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if found != json.loads(json.dumps(_manifest(spec, summary))):
        return False
    counts = (len(list((out_dir / "train" / "ok").glob("*.png"))),
              len(list((out_dir / "test" / "ok").glob("*.png"))),
              len(list((out_dir / "test" / "nok").glob("*/*.png"))),
              len(list((out_dir / "test" / "masks" / "nok").glob("*/*.png"))))
    return counts == (summary.train_ok, summary.test_ok, summary.test_nok, summary.masks)


def _write_all(root: Path, spec: DemoSpec) -> None:
    """Render every image of the spec into root (a fresh folder)."""
    for split, n, sub in (("train_ok", spec.n_train_ok, "train/ok"), ("test_ok", spec.n_test_ok, "test/ok")):
        folder = root / sub
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            _png(folder / f"{split}_{i:04d}.png", render_part(image_rng(spec.seed, split, i), spec.size).image)
    for i in range(spec.n_test_nok):
        kind = defect_of(i)
        part = render_part(image_rng(spec.seed, "test_nok", i), spec.size, kind)
        assert part.mask is not None
        stem = f"{kind}_{i:04d}"
        for folder, array in ((root / "test" / "nok" / kind, part.image),
                              (root / "test" / "masks" / "nok" / kind, part.mask)):
            folder.mkdir(parents=True, exist_ok=True)
            _png(folder / f"{stem}.png", array)


def generate_demo(out_dir: Path, spec: DemoSpec = DemoSpec()) -> DemoSummary:
    """Make the demo dataset in out_dir (idempotent: an identical existing demo is kept as is).

    out_dir may be missing, empty, or a previous demo (other spec or version: it is replaced).
    Any other non-empty folder is refused rather than overwritten.
    """
    _validate(spec)
    out_dir = Path(out_dir).expanduser().resolve()
    summary = _summary(out_dir, spec)
    if _is_complete(out_dir, spec, summary):
        log.info("demo dataset already complete in %s", out_dir)
        return summary
    if out_dir.exists():
        if not out_dir.is_dir():
            raise DemoError(f"{out_dir}: exists and is not a folder")
        if any(out_dir.iterdir()) and not (out_dir / MANIFEST).exists():
            raise DemoError(f"{out_dir}: folder is not empty and is not a demo dataset; choose another")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the demo is an ordinary folder
        _write_all(tmp, spec)
        atomic_write_text(tmp / MANIFEST, json.dumps(_manifest(spec, summary), indent=2, sort_keys=True))
        old = None
        if out_dir.exists():  # empty, or an outdated demo: move aside, swap in, then delete
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("demo dataset written to %s: %s", out_dir, summary)
    return summary
