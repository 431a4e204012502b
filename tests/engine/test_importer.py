"""scan_folder: layouts, bad files reported by name and reason, the rest imported."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from prefilter_qa_line import imagerule

from engine.errors import UserError
from engine.intake.importer import Skipped, detect_layout, ensure_allowed_root, scan_folder
from tests import fixtures_files as ff


def _reasons(plan) -> dict[str, str]:
    return {s.path: s.reason for s in plan.skipped}


def test_seed_layout(tmp_path: Path) -> None:
    root = ff.make_seed_dataset(tmp_path / "ds", n_train=4, n_test_ok=2,
                                defects={"scratch": 2, "burn": 1, "": 1})
    (root / "README.md").write_text("about", encoding="utf-8")
    calls: list[tuple[int, int]] = []
    plan = scan_folder(root, progress=lambda d, t: calls.append((d, t)))
    assert plan.layout == "seed" and plan.root == root.resolve()
    assert (plan.train_ok, plan.test_ok, plan.test_nok, plan.masks) == (4, 2, 4, 4)
    assert plan.skipped == []
    assert plan.defect_types == ["burn", "scratch"]
    assert calls[-1] == (10, 10) and len(calls) == 10
    nok = [i for i in plan.images if i.label == "nok"]
    assert {i.defect_type for i in nok} == {"scratch", "burn", None}
    for i in nok:
        assert i.mask_path is not None and i.mask_pixels == 100 and len(i.mask_sha256) == 64
        assert i.mask_path.stem == i.path.stem
    first = plan.images[0]
    assert first.rel_path == "train/ok/ok_000.png" and first.path.is_absolute()
    assert first.info.width == 64 and first.split == "train"


def test_seed_mask_any_extension(tmp_path: Path) -> None:
    root = ff.make_seed_dataset(tmp_path, defects={"x": 1}, masks=False)
    ff.make_mask(root / "test/masks/nok/x/nok_x_000.bmp")
    plan = scan_folder(root)
    assert plan.masks == 1 and plan.skipped == []


def test_mvtec_layout(tmp_path: Path) -> None:
    root = ff.make_mvtec_dataset(tmp_path / "bottle")
    assert detect_layout(root) == "mvtec"
    plan = scan_folder(root)
    assert (plan.train_ok, plan.test_ok, plan.test_nok, plan.masks) == (3, 2, 3, 3)
    assert plan.defect_types == ["crack", "hole"] and plan.skipped == []


def test_mvtec_mask_naming(tmp_path: Path) -> None:
    root = ff.make_mvtec_dataset(tmp_path, defects={"crack": 1})
    ff.make_mask(root / "ground_truth/crack/000.png")
    plan = scan_folder(root)
    assert _reasons(plan) == {"ground_truth/crack/000.png":
                              "mask name must end in _mask (expected 000_mask.png)"}


def test_flat_layout_recursive(tmp_path: Path) -> None:
    ff.make_good_png(tmp_path / "a.png", seed=1)
    ff.make_good_jpeg(tmp_path / "sub" / "b.jpg", seed=2)
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    plan = scan_folder(tmp_path)
    assert plan.layout == "flat" and plan.unknown == 2
    assert [i.rel_path for i in plan.images] == ["a.png", "sub/b.jpg"]
    assert all(i.split is None and i.label == "unknown" for i in plan.images)
    assert _reasons(plan) == {"notes.txt": "not an image file (extension .txt)"}


def test_explicit_layout_and_errors(tmp_path: Path) -> None:
    root = ff.make_seed_dataset(tmp_path / "ds")
    flat = scan_folder(root, layout="flat")  # masks are just images then (3 identical ones)
    assert flat.unknown == 10 and len(flat.skipped) == 2
    with pytest.raises(UserError, match="unknown layout"):
        scan_folder(root, layout="coco")
    with pytest.raises(UserError, match="folder not found"):
        scan_folder(tmp_path / "missing")
    with pytest.raises(UserError, match="not a folder"):
        scan_folder(ff.make_good_png(tmp_path / "f.png"))


def test_bad_files_are_skipped_with_reasons(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root = ff.make_seed_dataset(tmp_path / "ds", n_train=2, defects={"scratch": 1})
    ok = root / "train" / "ok"
    ff.make_truncated_jpeg(ok / "trunc.jpg")
    ff.make_zero_byte(ok / "zero.png")
    ff.make_text_as_png(ok / "text.png")
    ff.make_good_png(ok / "big.png", size=(300, 300))
    (ok / "notes.txt").write_text("x", encoding="utf-8")
    ff.make_good_png(root / "test" / "weird" / "lost.png", seed=77)
    monkeypatch.setattr(imagerule, "MAX_PIXELS", 50_000)
    plan = scan_folder(root)
    r = _reasons(plan)
    assert r["train/ok/trunc.jpg"].startswith("truncated or corrupt image")
    assert r["train/ok/zero.png"] == "empty file (0 bytes)"
    assert r["train/ok/text.png"] == "not an image (unrecognised format)"
    assert r["train/ok/big.png"] == ("image has 90000 pixels, more than the limit 50000 "
                                     "(PREFILTER_QA_MAX_PIXELS)")
    assert r["train/ok/notes.txt"] == "not an image file (extension .txt)"
    assert r["test/weird/lost.png"].startswith("outside the seed layout folders")
    assert len(r) == 6 and plan.train_ok == 2 and plan.test_nok == 1


def test_mask_problems(tmp_path: Path) -> None:
    root = ff.make_seed_dataset(tmp_path, defects={"s": 3})
    ff.make_mask(root / "test/masks/nok/s/nok_s_000.png", size=(100, 80))  # wrong size
    ff.make_mask(root / "test/masks/nok/s/orphan.png")  # no image
    ff.make_truncated_png(root / "test/nok/s/nok_s_001.png")  # image bad, mask fine
    ff.make_zero_byte(root / "test/masks/nok/s/nok_s_002.png")  # mask bad, image fine
    plan = scan_folder(root)
    r = _reasons(plan)
    assert r["test/masks/nok/s/nok_s_000.png"] == "mask is 100×80 but its image is 64×64"
    assert r["test/masks/nok/s/orphan.png"] == "mask without an image"
    assert r["test/nok/s/nok_s_001.png"].startswith("truncated or corrupt image")
    assert r["test/masks/nok/s/nok_s_001.png"] == "mask of a skipped image (test/nok/s/nok_s_001.png)"
    assert r["test/masks/nok/s/nok_s_002.png"] == "empty file (0 bytes)"
    # the mismatched and bad-mask images are kept as NOK without a mask
    assert plan.test_nok == 2 and plan.masks == 0


def test_duplicates(tmp_path: Path) -> None:
    root = ff.make_seed_dataset(tmp_path, n_train=2, defects={})
    shutil.copy(root / "train/ok/ok_000.png", root / "test/ok/copy.png")
    shutil.copy(root / "train/ok/ok_001.png", root / "train/ok/zz.png")
    plan = scan_folder(root)
    assert _reasons(plan) == {"test/ok/copy.png": "duplicate of train/ok/ok_000.png",
                              "train/ok/zz.png": "duplicate of train/ok/ok_001.png"}


def test_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    ff.make_good_png(outside / "secret.png", seed=40)
    root = ff.make_seed_dataset(tmp_path / "ds", n_train=1, defects={})
    os.symlink(outside / "secret.png", root / "train/ok/link.png")
    os.symlink(outside, root / "train/ok/linkdir")
    ff.make_good_png(tmp_path / "ds/extra/inside.png", seed=41)
    os.symlink(root / "extra/inside.png", root / "train/ok/inner.png")  # inside: fine
    os.symlink(root / "train", root / "train/ok/loop")
    os.symlink(tmp_path / "nowhere.png", root / "train/ok/broken.png")
    plan = scan_folder(root)
    r = _reasons(plan)
    assert r["train/ok/link.png"] == "symlink escapes the import root"
    assert r["train/ok/linkdir"] == "symlink escapes the import root"
    assert r["train/ok/loop"].startswith("symlink loop")
    assert r["train/ok/broken.png"] == "broken symlink"
    inner = [i for i in plan.images if i.rel_path == "train/ok/inner.png"]
    assert inner and inner[0].path == (root / "extra/inside.png").resolve()
    assert not any("secret" in str(i.path) for i in plan.images)


def test_unusual_valid_images_import(tmp_path: Path) -> None:
    ok = tmp_path / "train" / "ok"
    ff.make_16bit_png(ok / "a16.png")
    ff.make_rgba_png(ok / "rgba.png")
    ff.make_palette_png(ok / "pal.png")
    ff.make_gray_png(ok / "gray.png")
    ff.make_exif_rotated_jpeg(ok / "rot.jpg", size=(80, 40))
    ff.make_good_png(ok / "wide.webp", size=(120, 30))
    plan = scan_folder(tmp_path)
    assert plan.skipped == [] and plan.train_ok == 6
    rot = next(i for i in plan.images if i.rel_path.endswith("rot.jpg"))
    assert (rot.info.width, rot.info.height) == (40, 80)


def test_rescan_is_deterministic(tmp_path: Path) -> None:
    root = ff.make_seed_dataset(tmp_path, n_train=8, defects={"a": 3, "b": 2})
    ff.make_zero_byte(root / "train/ok/z.png")
    a, b = scan_folder(root), scan_folder(root)
    assert a.images == b.images and a.skipped == b.skipped
    assert [i.rel_path for i in a.images] == sorted(
        (i.rel_path for i in a.images), key=lambda p: (not p.startswith("train"), p))
    assert a.skipped == [Skipped("train/ok/z.png", "empty file (0 bytes)")]


def test_allowed_roots(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    assert ensure_allowed_root(tmp_path / "a", [tmp_path]) == (tmp_path / "a").resolve()
    with pytest.raises(UserError, match="PREFILTER_QA_IMPORT_ROOTS"):
        ensure_allowed_root(tmp_path / "a" / ".." / "..", [tmp_path])
