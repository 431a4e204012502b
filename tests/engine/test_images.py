"""The one image rule: unusual valid files work, bad files give a specific InputFileError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prefilter_qa_line import imagerule

from engine.errors import InputFileError
from engine.intake.images import ImageInfo, probe_image, read_image, read_mask, resize_image, resize_mask, sha256_file
from tests import fixtures_files as ff


def _reason(exc: pytest.ExceptionInfo[InputFileError]) -> str:
    return exc.value.reason


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif", ".webp"])
def test_every_extension_reads_as_rgb(tmp_path: Path, suffix: str) -> None:
    p = ff.make_good_png(tmp_path / f"a{suffix}", size=(70, 50))
    info = probe_image(p)
    assert (info.width, info.height) == (70, 50)
    assert info.sha256 == sha256_file(p) and info.size_bytes == p.stat().st_size
    img = read_image(p)
    assert img.shape == (50, 70, 3) and img.dtype == np.uint8


def test_16bit_scaled_by_full_range(tmp_path: Path) -> None:
    p = ff.make_16bit_png(tmp_path / "a.png", size=(64, 48), value=65535)
    info = probe_image(p)
    assert info.mode.startswith("I")
    img = read_image(p)
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    assert img[:, :32].max() == 0 and img[:, 32:].min() == 255
    # 257 * 100 is 100 in 8 bits: the type's range, not the image's own min/max
    img = read_image(ff.make_16bit_png(tmp_path / "b.png", value=257 * 100))
    assert img[:, 32:].min() == 100 and img[:, 32:].max() == 100


def test_rgba_alpha_dropped_not_composited(tmp_path: Path) -> None:
    p = ff.make_rgba_png(tmp_path / "a.png")
    img = read_image(p)
    assert img.shape == (64, 64, 3)
    # transparent half keeps its colours (no white/black compositing)
    assert 20 < img[:, :32].mean() < 235


@pytest.mark.parametrize("maker", [ff.make_palette_png, ff.make_gray_png])
def test_palette_and_gray_become_rgb(tmp_path: Path, maker) -> None:
    img = read_image(maker(tmp_path / "a.png"))
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8


def test_gray_is_replicated_to_three_channels(tmp_path: Path) -> None:
    img = read_image(ff.make_gray_png(tmp_path / "a.png"))
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()


def test_cmyk_and_other_modes(tmp_path: Path) -> None:
    for mode in ("CMYK", "LA", "1", "I", "F"):
        p = ff.make_good_png(tmp_path / f"{mode}.tif", size=(40, 30), mode=mode)
        img = read_image(p)
        assert img.shape == (30, 40, 3) and img.dtype == np.uint8, mode


def test_exif_rotation_applied(tmp_path: Path) -> None:
    p = ff.make_exif_rotated_jpeg(tmp_path / "r.jpg", size=(80, 40), orientation=6)
    info = probe_image(p)
    assert (info.width, info.height) == (40, 80)  # displayed size, sides swapped
    img = read_image(p)
    assert img.shape == (80, 40, 3)
    # stored top-left red block -> displayed top-right after a 90° clockwise turn
    assert img[2:8, -8:-2, 0].mean() > 200 and img[2:8, -8:-2, 1].mean() < 60
    assert img[2:8, 2:8, 0].mean() < 160


def test_mask_matches_rotated_image(tmp_path: Path) -> None:
    ff.make_exif_rotated_jpeg(tmp_path / "r.jpg", size=(80, 40))
    m = ff.make_mask(tmp_path / "m.png", size=(40, 80))
    assert read_mask(m, expected_hw=(80, 40)).shape == (80, 40)


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.99])
def test_truncated_jpeg_detected(tmp_path: Path, keep: float) -> None:
    p = ff.make_truncated_jpeg(tmp_path / "t.jpg", keep=keep)
    with pytest.raises(InputFileError) as e:
        probe_image(p)
    assert _reason(e).startswith("truncated or corrupt image")
    assert e.value.path == str(p)
    with pytest.raises(InputFileError):
        read_image(p)


def test_truncated_png_detected(tmp_path: Path) -> None:
    with pytest.raises(InputFileError) as e:
        probe_image(ff.make_truncated_png(tmp_path / "t.png"))
    assert _reason(e).startswith("truncated or corrupt image")


def test_zero_bytes(tmp_path: Path) -> None:
    with pytest.raises(InputFileError) as e:
        probe_image(ff.make_zero_byte(tmp_path / "z.png"))
    assert _reason(e) == "empty file (0 bytes)"


def test_text_with_image_extension(tmp_path: Path) -> None:
    with pytest.raises(InputFileError) as e:
        read_image(ff.make_text_as_png(tmp_path / "t.png"))
    assert _reason(e) == "not an image (unrecognised format)"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError) as e:
        probe_image(tmp_path / "nope.png")
    assert _reason(e) == "file not found"


def test_bomb_header_refused(tmp_path: Path) -> None:
    with pytest.raises(InputFileError) as e:
        probe_image(ff.make_bomb_png(tmp_path / "b.png"))
    assert "10000000000 pixels" in _reason(e) and "PREFILTER_QA_MAX_PIXELS" in _reason(e)


def test_pixel_limit_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = ff.make_good_png(tmp_path / "a.png", size=(64, 64))
    monkeypatch.setattr(imagerule, "MAX_PIXELS", 1000)
    with pytest.raises(InputFileError) as e:
        read_image(p)
    assert _reason(e) == ("image has 4096 pixels, more than the limit 1000 "
                          "(PREFILTER_QA_MAX_PIXELS)")


def test_max_pixels_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFILTER_QA_MAX_PIXELS", "1234")
    assert imagerule._max_pixels_from_env() == 1234
    monkeypatch.setenv("PREFILTER_QA_MAX_PIXELS", "lots")
    assert imagerule._max_pixels_from_env() == 100_000_000


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "1", "P", "I;16"])
def test_mask_any_mode_binarised(tmp_path: Path, mode: str) -> None:
    p = ff.make_mask(tmp_path / "m.png", size=(64, 32), box=(10, 5, 20, 15), mode=mode)
    m = read_mask(p, expected_hw=(32, 64))
    assert m.dtype == bool and m.shape == (32, 64) and int(m.sum()) == 100


def test_mask_size_mismatch(tmp_path: Path) -> None:
    p = ff.make_mask(tmp_path / "m.png", size=(100, 80))
    with pytest.raises(InputFileError) as e:
        read_mask(p, expected_hw=(128, 128))
    assert _reason(e) == "mask is 100×80 but its image is 128×128"


def test_resize_stretches_and_keeps_dtype() -> None:
    img = np.random.default_rng(0).integers(0, 256, (50, 80, 3), dtype=np.uint8)
    assert resize_image(img, 32).shape == (32, 32, 3)
    out = resize_image(img, (100, 60))  # (H, W): one side grows -> bilinear
    assert out.shape == (100, 60, 3) and out.dtype == np.uint8
    flat = np.full((10, 10, 3), 77, np.uint8)
    assert (resize_image(flat, 4) == 77).all() and (resize_image(flat, 40) == 77).all()


def test_resize_mask_stays_binary() -> None:
    m = np.zeros((40, 40), bool)
    m[10:30, 10:30] = True
    out = resize_mask(m, (20, 30))
    assert out.dtype == bool and out.shape == (20, 30) and 0 < out.sum() < 600


def test_image_info_is_frozen() -> None:
    info = ImageInfo(1, 2, "L", "x", 3)
    with pytest.raises(AttributeError):
        info.width = 5  # type: ignore[misc]
