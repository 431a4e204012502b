"""The image rule of the line scorer is the engine's: one implementation, the same refusals."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from prefilter_qa_line import imagerule as line_rule
from prefilter_qa_line.imagerule import ImageRuleError

from tests import fixtures_files as ff


@pytest.fixture(scope="module")
def eng_images() -> ModuleType:
    return importlib.import_module("engine.intake.images")


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


def test_the_engine_decodes_through_this_rule(eng_images: ModuleType) -> None:
    """One implementation: the engine's functions are this module's (wrapped for its error type)."""
    from engine.intake import enhance as eng_enhance

    assert eng_images.IMAGE_RULE == line_rule.IMAGE_RULE
    for name in ("read_image", "read_mask", "probe_image", "open_image", "read_bytes", "to_rgb"):
        assert getattr(eng_images, name).__wrapped__ is getattr(line_rule, name), name
    assert eng_images.resize_image is line_rule.resize_image and eng_images.resize_mask is line_rule.resize_mask
    assert eng_enhance.enhance is line_rule.enhance


def test_model_input_is_the_rule_then_the_enhancement(tmp_path: Path) -> None:
    for name, p in _variety(tmp_path).items():
        img = line_rule.read_image(p)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
        for size in (256, 64):  # huge upscale, downscale
            assert np.array_equal(line_rule.model_input(img, size), line_rule.resize_image(img, size)), name
            assert np.array_equal(line_rule.model_input(img, size, True),
                                  line_rule.enhance(line_rule.resize_image(img, size))), name
        assert line_rule.resize_image(img, (48, 80)).shape == (48, 80, 3)


def test_masks_are_binary_at_any_mode(tmp_path: Path) -> None:
    for mode in ("L", "I;16", "RGB", "1", "P"):
        p = ff.make_mask(tmp_path / f"m_{mode.replace(';', '')}.png", size=(40, 30), mode=mode)
        mask = line_rule.read_mask(p, (30, 40))
        assert mask.dtype == bool and mask.any() and not mask.all(), mode
        assert line_rule.resize_mask(mask, 64).dtype == bool
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
