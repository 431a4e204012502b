"""The line's image rule gives byte-identical pixels (and the same refusals) as engine's."""

from __future__ import annotations

import importlib
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from prefilter_qa_line import imagerule as line_rule
from prefilter_qa_line.imagerule import ImageRuleError
from tests import fixtures_files as ff


def _engine(*names: str) -> ModuleType:
    """engine's module under its current name (engine/ is being reorganised)."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    pytest.skip(f"none of {names} importable")


@pytest.fixture(scope="module")
def eng_images() -> ModuleType:
    return _engine("engine.intake.images", "engine.images")


@pytest.fixture(scope="module")
def eng_enhance() -> ModuleType:
    return _engine("engine.intake.enhance", "engine.enhance")


def _variety(d: Path) -> dict[str, Path]:
    """Unusual but valid files: every mode and orientation path of the rule."""
    files = {
        "16bit": ff.make_16bit_png(d / "16bit.png", size=(64, 48), value=40_000),
        "16bit_full": ff.make_16bit_png(d / "16bit_full.png", size=(50, 30), value=65535),
        "rgba": ff.make_rgba_png(d / "rgba.png", size=(64, 64)),
        "palette_transparent": ff.make_palette_png(d / "pal.png", size=(64, 40)),
        "gray": ff.make_gray_png(d / "gray.png", size=(48, 64)),
        "exif_rotated_jpeg": ff.make_exif_rotated_jpeg(d / "rot.jpg", size=(80, 40), orientation=6),
        "exif_transposed_jpeg": ff.make_exif_rotated_jpeg(d / "rot5.jpg", size=(60, 90),
                                                          orientation=5),
        "non_square_jpeg": ff.make_good_jpeg(d / "wide.jpg", size=(300, 120), seed=3),
        "tiny_for_upscale": ff.make_good_png(d / "tiny.png", size=(13, 7), seed=4),
        "large_for_downscale": ff.make_good_png(d / "large.png", size=(640, 480), seed=5),
        "one_side_up": ff.make_good_png(d / "tall.png", size=(30, 400), seed=6),
        "bmp": ff.make_good_png(d / "a.bmp", size=(70, 50), seed=7),
        "webp": ff.make_good_png(d / "a.webp", size=(70, 50), seed=8),
    }
    for mode in ("CMYK", "LA", "1", "I", "F"):
        files[f"tif_{mode}"] = ff.make_good_png(d / f"{mode}.tif", size=(40, 30), mode=mode)
    return files


def test_rule_string_and_constants_match(eng_images: ModuleType, eng_enhance: ModuleType) -> None:
    assert line_rule.IMAGE_RULE == eng_images.IMAGE_RULE
    assert line_rule.IMAGE_EXTENSIONS == eng_images.IMAGE_EXTENSIONS
    assert line_rule._FORMATS == eng_images._FORMATS
    assert line_rule.MAX_PIXELS == eng_images.MAX_PIXELS
    for name in ("CLAHE_CLIP_LIMIT", "CLAHE_TILES", "GAMMA", "UNSHARP_SIGMA", "UNSHARP_AMOUNT"):
        assert getattr(line_rule, name) == getattr(eng_enhance, name), name
    assert np.array_equal(line_rule._GAMMA_LUT, eng_enhance._GAMMA_LUT)


def test_pixels_byte_identical_to_engine(tmp_path: Path, eng_images: ModuleType,
                                         eng_enhance: ModuleType) -> None:
    for name, p in _variety(tmp_path).items():
        ours, theirs = line_rule.read_image(p), eng_images.read_image(p)
        assert ours.dtype == theirs.dtype == np.uint8 and ours.shape == theirs.shape, name
        assert np.array_equal(ours, theirs), name
        assert asdict(line_rule.probe_image(p)) == asdict(eng_images.probe_image(p)), name
        for size in (256, 64, (48, 80)):  # huge upscale, downscale, non-square target
            a = line_rule.resize_image(ours, size)
            b = eng_images.resize_image(theirs, size)
            assert np.array_equal(a, b), (name, size)
            assert np.array_equal(line_rule.enhance(a), eng_enhance.enhance(b)), (name, size)
        assert np.array_equal(line_rule.model_input(ours, 64, True),
                              eng_enhance.enhance(eng_images.resize_image(theirs, 64))), name


def test_masks_identical_to_engine(tmp_path: Path, eng_images: ModuleType) -> None:
    for mode in ("L", "I;16", "RGB", "1", "P"):
        p = ff.make_mask(tmp_path / f"m_{mode.replace(';', '')}.png", size=(40, 30), mode=mode)
        ours, theirs = line_rule.read_mask(p, (30, 40)), eng_images.read_mask(p, (30, 40))
        assert ours.dtype == bool and np.array_equal(ours, theirs), mode
        assert np.array_equal(line_rule.resize_mask(ours, 64), eng_images.resize_mask(theirs, 64))
    with pytest.raises(ImageRuleError, match="mask is 40×30 but its image is 41×30"):
        line_rule.read_mask(tmp_path / "m_L.png", (30, 41))


def _bad_files(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    return {"truncated_jpeg": ff.make_truncated_jpeg(d / "t.jpg"),
            "truncated_png": ff.make_truncated_png(d / "t.png"),
            "zero_byte": ff.make_zero_byte(d / "z.png"),
            "text": ff.make_text_as_png(d / "x.png"),
            "bomb": ff.make_bomb_png(d / "bomb.png"),
            "missing": d / "missing.png",
            "folder": d}


def test_refusals_give_engine_reasons(tmp_path: Path, eng_images: ModuleType) -> None:
    from engine.errors import InputFileError

    for name, p in _bad_files(tmp_path / "bad").items():
        with pytest.raises(ImageRuleError) as ours:
            line_rule.read_image(p)
        with pytest.raises(InputFileError) as theirs:
            eng_images.read_image(p)
        assert ours.value.reason == theirs.value.reason, name
        assert str(ours.value) == f"{p}: {ours.value.reason}"


def test_pixel_limit_read_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = ff.make_good_png(tmp_path / "a.png", size=(64, 64))
    monkeypatch.setattr(line_rule, "MAX_PIXELS", 4095)
    with pytest.raises(ImageRuleError, match=r"image has 4096 pixels, more than the limit 4095 "
                                             r"\(PREFILTER_QA_MAX_PIXELS\)"):
        line_rule.read_image(p)
    monkeypatch.setattr(line_rule, "MAX_PIXELS", 4096)
    assert line_rule.read_image(p).shape == (64, 64, 3)


def test_decode_image_from_verified_bytes(tmp_path: Path) -> None:
    p = ff.make_exif_rotated_jpeg(tmp_path / "r.jpg")
    assert np.array_equal(line_rule.decode_image(p.read_bytes(), p), line_rule.read_image(p))
    with pytest.raises(ImageRuleError, match="empty file"):
        line_rule.decode_image(b"", p)
