"""Generated benchmark images (the synthetic demo parts of `engine.demo.generate`), cached between runs.

Generation is never timed. Test sets can be written half as JPEG (quality 90) so that the
evaluation decodes both formats, as it does on real data (the magnetic-tile sample is JPEG).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2

from bench.common import data_cache
from engine.evaluation.evaluate import EvalItem

log = logging.getLogger(__name__)


def demo_set(size: int, n_train: int, n_test_ok: int, n_test_nok: int, seed: int = 0,
             cache: Path | None = None) -> Path:
    """Root of a seed-layout demo dataset with these counts (made once, then reused)."""
    from engine.demo.generate import DemoSpec, generate_demo

    root = (cache or data_cache()) / f"demo-{size}-{n_train}-{n_test_ok}-{n_test_nok}-s{seed}"
    spec = DemoSpec(size=size, n_train_ok=n_train, n_test_ok=n_test_ok, n_test_nok=n_test_nok, seed=seed)
    return generate_demo(root, spec).root


def train_paths(root: Path, n: int | None = None) -> list[Path]:
    paths = sorted((root / "train" / "ok").glob("*.png"))
    return paths[:n] if n is not None else paths


def _as_jpeg(png: Path, folder: Path) -> Path:
    """A JPEG copy of a PNG in `folder` (made once)."""
    out = folder / (png.stem + ".jpg")
    if not out.exists():
        folder.mkdir(parents=True, exist_ok=True)
        img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        tmp = out.with_name(out.stem + ".tmp.jpg")
        cv2.imwrite(str(tmp), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        tmp.replace(out)
    return out


def eval_items(root: Path, n_ok: int | None = None, n_nok: int | None = None,
               jpeg_share: float = 0.5) -> list[EvalItem]:
    """Test items of a demo root (OK, then NOK with masks); every k-th image as JPEG."""
    ok = sorted((root / "test" / "ok").glob("*.png"))[:n_ok]
    nok = sorted((root / "test" / "nok").glob("*/*.png"))[:n_nok]
    nok.sort(key=lambda p: p.name)  # interleave defect types when truncated
    every = round(1 / jpeg_share) if jpeg_share > 0 else 0
    items: list[EvalItem] = []
    for k, p in enumerate(ok + nok):
        label = "ok" if k < len(ok) else "nok"
        dtype = p.parent.name if label == "nok" else None
        mask = (root / "test" / "masks" / "nok" / p.parent.name / p.name) if label == "nok" else None
        src = _as_jpeg(p, root / "jpeg" / p.parent.name) if every and k % every == 0 else p
        items.append(EvalItem(image_id=k, path=src, label=label, defect_type=dtype, mask_path=mask))
    return items
