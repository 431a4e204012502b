"""Thumbnail cache: aspect kept, created once, content-keyed, bad sources give placeholders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.intake.images import sha256_file
from engine.intake.thumbnails import get_thumbnail, get_thumbnails, placeholder_path, thumbnail_path
from tests import fixtures_files as ff


def test_path_is_content_keyed(tmp_path: Path) -> None:
    sha = "ab" + "0" * 62
    p = thumbnail_path(tmp_path, sha, 160)
    assert p == tmp_path / "thumbs" / "ab" / f"{sha}-160.jpg"
    assert thumbnail_path(tmp_path, sha, 160, mask_sha256="f" * 64) != p
    with pytest.raises(ValueError):
        thumbnail_path(tmp_path, "../../etc/passwd", 160)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_keeps_aspect_and_is_cached(tmp_path: Path, suffix: str) -> None:
    img = ff.make_good_png(tmp_path / f"a{suffix}", size=(400, 200))
    sha = sha256_file(img)
    out = get_thumbnail(tmp_path / "cache", img, sha, size=160)
    assert out == thumbnail_path(tmp_path / "cache", sha, 160)
    with Image.open(out) as t:
        assert t.size == (160, 80) and t.mode == "RGB"
    mtime = out.stat().st_mtime_ns
    assert get_thumbnail(tmp_path / "cache", img, sha, size=160) == out
    assert out.stat().st_mtime_ns == mtime  # not rewritten
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_unusual_sources(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    rot = ff.make_exif_rotated_jpeg(tmp_path / "r.jpg", size=(80, 40))
    with Image.open(get_thumbnail(cache, rot, sha256_file(rot), size=64)) as t:
        assert t.size == (32, 64)  # displayed orientation
    for p in (ff.make_16bit_png(tmp_path / "a.png"), ff.make_rgba_png(tmp_path / "b.png"),
              ff.make_palette_png(tmp_path / "c.png")):
        out = get_thumbnail(cache, p, sha256_file(p), size=32)
        assert out == thumbnail_path(cache, sha256_file(p), 32)


def test_missing_changed_unreadable_give_placeholders(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    img = ff.make_good_png(tmp_path / "a.png")
    sha = sha256_file(img)
    moved = tmp_path / "moved.png"
    shutil.move(img, moved)
    assert get_thumbnail(cache, img, sha) == placeholder_path(cache, "missing")
    assert not thumbnail_path(cache, sha).exists()
    ff.make_good_png(img, seed=99)  # a different picture under the old name
    assert get_thumbnail(cache, img, sha) == placeholder_path(cache, "changed")
    trunc = ff.make_truncated_jpeg(tmp_path / "t.jpg")
    assert get_thumbnail(cache, trunc, sha256_file(trunc)) == placeholder_path(cache,
                                                                              "unreadable")
    shutil.move(moved, img)  # restored: the real thumbnail appears
    assert get_thumbnail(cache, img, sha) == thumbnail_path(cache, sha)
    with Image.open(placeholder_path(cache, "missing")) as ph:
        assert ph.size == (160, 160)


def test_mask_overlay(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    img = ff.make_gray_png(tmp_path / "a.png", size=(64, 64))
    mask = ff.make_mask(tmp_path / "m.png", size=(64, 64), box=(0, 0, 32, 64))
    sha = sha256_file(img)
    out = get_thumbnail(cache, img, sha, size=64, mask_path=mask)
    assert out == thumbnail_path(cache, sha, 64, mask_sha256=sha256_file(mask))
    a = np.asarray(Image.open(out)).astype(int)
    red = a[..., 0] - a[..., 1]
    assert red[:, 4:28].mean() > 60 and abs(red[:, 36:60].mean()) < 15
    bad = ff.make_mask(tmp_path / "bad.png", size=(10, 10))
    assert get_thumbnail(cache, img, sha, size=64, mask_path=bad) == thumbnail_path(cache, sha, 64)


def test_get_thumbnails_page(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    items = []
    for i in range(12):
        p = ff.make_good_png(tmp_path / f"{i}.jpg", size=(96, 64), seed=i)
        items.append((p, sha256_file(p)))
    items.append((tmp_path / "gone.png", "c" * 64))
    out = get_thumbnails(cache, items, size=48)
    assert out[:12] == [thumbnail_path(cache, sha, 48) for _, sha in items[:12]]
    assert out[12] == placeholder_path(cache, "missing", 48)
    assert get_thumbnails(cache, items, size=48) == out
