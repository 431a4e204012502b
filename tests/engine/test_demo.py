"""The synthetic demo dataset: layout, determinism, exact masks, and not trivially separable."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from engine.demo.generate import DEFECT_TYPES, MANIFEST, DemoError, DemoSpec, DemoSummary, generate_demo, image_rng
from engine.demo.render import MASK_TOL, MAX_AREA, MIN_AREA, render_part

TINY = DemoSpec(size=64, n_train_ok=8, n_test_ok=4, n_test_nok=6, seed=3)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_layout_and_counts(tmp_path: Path) -> None:
    summary = generate_demo(tmp_path / "demo", TINY)
    root = (tmp_path / "demo").resolve()
    assert summary == DemoSummary(root=root, train_ok=8, test_ok=4, test_nok=6, masks=6,
                                  per_defect={"scratch": 2, "burn": 2, "missing": 2})
    assert len(list((root / "train" / "ok").glob("*.png"))) == 8
    assert len(list((root / "test" / "ok").glob("*.png"))) == 4
    for kind in DEFECT_TYPES:
        images = sorted(p.stem for p in (root / "test" / "nok" / kind).glob("*.png"))
        masks = sorted(p.stem for p in (root / "test" / "masks" / "nok" / kind).glob("*.png"))
        assert len(images) == 2 and images == masks
        for stem in images:
            img = cv2.imread(str(root / "test" / "nok" / kind / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
            mask = cv2.imread(str(root / "test" / "masks" / "nok" / kind / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
            assert img.shape == (64, 64, 3) and img.dtype == np.uint8
            assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
            assert MIN_AREA <= (mask > 0).mean() <= MAX_AREA
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["spec"] == {"size": 64, "n_train_ok": 8, "n_test_ok": 4, "n_test_nok": 6, "seed": 3}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_deterministic_and_prefix_stable(tmp_path: Path) -> None:
    generate_demo(tmp_path / "a", TINY)
    generate_demo(tmp_path / "b", TINY)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    more = DemoSpec(size=64, n_train_ok=10, n_test_ok=4, n_test_nok=9, seed=3)
    generate_demo(tmp_path / "c", more)
    a, c = _files(tmp_path / "a"), _files(tmp_path / "c")
    assert all(c[name] == data for name, data in a.items() if name != MANIFEST)
    generate_demo(tmp_path / "d", DemoSpec(size=64, n_train_ok=8, n_test_ok=4, n_test_nok=6, seed=4))
    assert _files(tmp_path / "d")["train/ok/train_ok_0000.png"] != a["train/ok/train_ok_0000.png"]


@pytest.mark.parametrize("size", [64, 256])
@pytest.mark.parametrize("kind", DEFECT_TYPES)
def test_mask_is_exactly_the_changed_pixels(kind: str, size: int) -> None:
    for index in range(4):
        part = render_part(image_rng(0, "test_nok", index), size, kind)
        assert part.mask is not None and part.mask.shape == (size, size)
        diff = np.abs(part.defective - part.clean).max(axis=2)
        inside = part.mask > 0
        assert np.array_equal(inside, diff > MASK_TOL)
        assert MIN_AREA <= inside.mean() <= MAX_AREA
        # visible, not a faint smudge: the defect moves its pixels well above the sensor noise
        assert diff[inside].max() > 3 * MASK_TOL and diff[inside].mean() > 1.5 * MASK_TOL


@pytest.mark.parametrize("kind", DEFECT_TYPES)
def test_defect_changes_only_the_masked_pixels_of_the_ok_twin(kind: str) -> None:
    """Same per-image RNG with and without a defect: same scene, same noise, differ only in the mask."""
    ok = render_part(image_rng(7, "test_nok", 1), 128)
    nok = render_part(image_rng(7, "test_nok", 1), 128, kind)
    assert ok.mask is None and np.array_equal(ok.clean, ok.defective)
    assert np.array_equal(ok.clean, nok.clean)
    diff = np.abs(nok.image.astype(int) - ok.image.astype(int)).max(axis=2)
    inside = nok.mask > 0
    assert diff[~inside].max() <= np.ceil(MASK_TOL * 255) + 1
    assert diff[inside].mean() > 2 * MASK_TOL * 255


def test_saved_files_match_the_render(tmp_path: Path) -> None:
    root = generate_demo(tmp_path / "demo", TINY).root
    for i in range(TINY.n_test_nok):
        kind = DEFECT_TYPES[i % 3]
        part = render_part(image_rng(TINY.seed, "test_nok", i), TINY.size, kind)
        assert np.array_equal(_rgb(root / "test" / "nok" / kind / f"{kind}_{i:04d}.png"), part.image)
        mask_path = root / "test" / "masks" / "nok" / kind / f"{kind}_{i:04d}.png"
        saved = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(saved, part.mask)


def test_idempotent_second_call(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    first = generate_demo(out, TINY)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    t0 = time.perf_counter()
    second = generate_demo(out, TINY)
    assert time.perf_counter() - t0 < 0.5
    assert first == second
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    # another spec replaces the old demo completely
    other = DemoSpec(size=64, n_train_ok=5, n_test_ok=2, n_test_nok=3, seed=3)
    generate_demo(out, other)
    assert len(list((out / "train" / "ok").glob("*.png"))) == 5
    assert json.loads((out / MANIFEST).read_text())["spec"]["n_train_ok"] == 5
    # an incomplete demo (a file deleted) is rebuilt
    next(iter((out / "test" / "ok").glob("*.png"))).unlink()
    generate_demo(out, other)
    assert len(list((out / "test" / "ok").glob("*.png"))) == 2


def test_refuses_foreign_folder_and_bad_spec(tmp_path: Path) -> None:
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "keep.png").write_bytes(b"mine")
    with pytest.raises(DemoError, match="not a demo dataset"):
        generate_demo(foreign, TINY)
    assert (foreign / "keep.png").read_bytes() == b"mine"
    with pytest.raises(DemoError, match="at least one OK training image"):
        generate_demo(tmp_path / "x", DemoSpec(size=64, n_train_ok=0))
    with pytest.raises(DemoError, match="size"):
        generate_demo(tmp_path / "x", DemoSpec(size=8))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert generate_demo(empty, TINY).test_nok == 6


def test_mean_image_baseline_is_weak_at_default_size(tmp_path: Path) -> None:
    """Global nuisance (pose, lighting) must dominate the distance to the mean OK image."""
    t0 = time.process_time()  # CPU seconds: robust to a busy machine
    root = generate_demo(tmp_path / "demo", DemoSpec()).root
    elapsed = time.process_time() - t0
    assert elapsed < 30, f"default demo took {elapsed:.1f} CPU s"  # ~6 s measured

    def load(paths: list[Path]) -> np.ndarray:
        return np.stack([_rgb(p) for p in paths]).astype(np.float32) / 255.0  # (N, H, W, 3)

    mean = load(sorted((root / "train" / "ok").glob("*.png"))).mean(axis=0)
    ok = load(sorted((root / "test" / "ok").glob("*.png")))
    nok = load(sorted((root / "test" / "nok").glob("*/*.png")))
    scores = np.concatenate([((ok - mean) ** 2).mean(axis=(1, 2, 3)), ((nok - mean) ** 2).mean(axis=(1, 2, 3))])
    labels = np.r_[np.zeros(len(ok)), np.ones(len(nok))]
    assert len(ok) == 40 and len(nok) == 40
    assert roc_auc_score(labels, scores) <= 0.80
