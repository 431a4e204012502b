"""Scoring: dashboard verdicts, per-image ERRORs that never stop the rest, heatmaps."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
from prefilter_qa_line import open_scorer
from prefilter_qa_line.heatmap import write_heatmap
from prefilter_qa_line.imagerule import model_input, read_image

from tests import fixtures_files as ff
from tests.line.bundles import flat_image, part_image, reference_scores, rewrite_bundle, write_bundle
from tests.line.conftest import Golden


def test_golden_files_score_their_golden_verdicts(bundle_dir: Path, golden: Golden) -> None:
    scorer = open_scorer(bundle_dir)
    results = scorer.score_images([p for p, _ in golden.files])
    entries = json.loads((bundle_dir / "golden" / "golden.json").read_text())
    assert [r.verdict for r in results] == [e["verdict"] for e in entries]
    for r, e in zip(results, entries):
        assert r.score == pytest.approx(e["score"], rel=1e-5, abs=1e-6)
        assert r.threshold_id == 12 and r.bundle_sha == scorer.sha and r.error is None
        assert r.ms > 0 and r.at.endswith("+00:00") and r.heatmap is None


def test_review_band_and_batch_size_independence(bundle_dir: Path, tmp_path: Path) -> None:
    paths = [part_image(tmp_path / f"p{i}.png", defect=i % 2 == 1, seed=40 + i) for i in range(5)]
    # a faint scratch lands in the review band [0.1, 0.2)
    img = read_image(paths[0]).astype(np.int16)
    img[20:23, 20:45] -= 30
    cv2.imwrite(str(tmp_path / "faint.png"), cv2.cvtColor(img.clip(0, 255).astype(np.uint8),
                                                         cv2.COLOR_RGB2BGR))
    paths.append(tmp_path / "faint.png")
    one = open_scorer(bundle_dir, batch_size=1).score_images(paths)
    many = open_scorer(bundle_dir, batch_size=8).score_images(paths)
    assert [r.verdict for r in one] == [r.verdict for r in many] == \
        ["OK", "NOK", "OK", "NOK", "OK", "REVIEW"]
    for a, b in zip(one, many):
        assert a.score == pytest.approx(b.score, rel=1e-5, abs=1e-6)


def test_bad_inputs_are_errors_and_never_stop_the_rest(bundle_dir: Path, tmp_path: Path,
                                                       golden: Golden) -> None:
    bad = {"truncated_jpeg": (ff.make_truncated_jpeg(tmp_path / "t.jpg"), "truncated or corrupt"),
           "truncated_png": (ff.make_truncated_png(tmp_path / "t.png"), "truncated or corrupt"),
           "zero_byte": (ff.make_zero_byte(tmp_path / "z.png"), "empty file (0 bytes)"),
           "not_an_image": (ff.make_text_as_png(tmp_path / "x.png"), "not an image"),
           "huge": (ff.make_bomb_png(tmp_path / "bomb.png"), "more than the limit 100000000"),
           "missing": (tmp_path / "missing.png", "file not found"),
           "folder": (tmp_path, "is a folder"),
           "nan": (flat_image(tmp_path / "flat.png"), "non-finite score")}
    good = golden.files[0][0]
    paths = [good] + [p for p, _ in bad.values()] + [good]
    results = open_scorer(bundle_dir, batch_size=3).score_images(paths, heatmaps=tmp_path / "h")
    assert results[0].verdict == results[-1].verdict == "OK"
    assert results[0].heatmap and results[-1].heatmap and results[0].heatmap != results[-1].heatmap
    for r, (name, (p, reason)) in zip(results[1:-1], bad.items()):
        assert r.path == str(p)
        assert r.verdict == "ERROR" and r.score is None and r.heatmap is None, name
        assert reason in r.error, (name, r.error)
        json.loads(r.to_json())  # valid JSON (no NaN)


def _engine_overlay(png: Path, orig: np.ndarray, amap: np.ndarray,
                    map_range: tuple[float, float] | None, pixel: float | None) -> None:
    """engine's predict overlay (its private writer while it exists, else the same steps)."""
    from engine.evaluation import predict
    if hasattr(predict, "_write_overlay"):
        predict._write_overlay(png, orig, amap, map_range, pixel)
        return
    from engine.evaluation import heatmaps as heat
    vmin, vmax = map_range or np.percentile(amap, [1.0, 99.9])
    big = heat.to_original_grid(amap, orig.shape[:2])
    img = heat.overlay(orig, big, vmin, vmax)
    if pixel is not None:
        img = heat.mask_overlay(img, heat.predicted_mask(big, pixel), (255, 255, 255), alpha=0.0)
    cv2.imwrite(str(png), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def test_heatmap_matches_engine_overlay(bundle_dir: Path, tmp_path: Path,
                                        golden: Golden) -> None:
    rewrite_bundle(bundle_dir, lambda m, g: (m.update(map_range=[0.0, 0.05]),
                                             m["threshold"].update(pixel=0.02)))
    scorer = open_scorer(bundle_dir)
    src = golden.files[2][0]
    r = scorer.score_images([src], heatmaps=tmp_path / "maps")[0]
    png = Path(r.heatmap)
    assert png.name == "nok_0_heatmap.png"
    assert stat.S_IMODE(png.stat().st_mode) & stat.S_IRGRP
    ours = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    orig = read_image(src)
    assert ours.shape == orig.shape  # original resolution (80x60), not the 64² input
    _, amap = scorer._backend.run(model_input(orig, 64)[None])
    assert (amap[0] >= 0.02).any()  # the defect outline is drawn
    for map_range, pixel in (((0.0, 0.05), 0.02), (None, None)):
        ref = tmp_path / f"ref_{pixel}.png"
        _engine_overlay(ref, orig, amap[0], map_range, pixel)
        mine = write_heatmap(tmp_path / f"mine_{pixel}.png", orig, amap[0], map_range, pixel)
        assert np.array_equal(cv2.imread(str(mine)), cv2.imread(str(ref)))
    assert np.array_equal(ours, cv2.imread(str(tmp_path / "ref_0.02.png"), cv2.IMREAD_UNCHANGED))
    assert not list((tmp_path / "maps").glob(".*"))  # no temp files left


def test_enhanced_bundle_scores_enhanced_pixels(tmp_path: Path, golden: Golden) -> None:
    files = golden.files
    scores = reference_scores([p for p, _ in files], enhance=True)
    assert scores != pytest.approx(golden.scores, rel=1e-3)  # enhancement changes the pixels
    b = write_bundle(tmp_path / "enh", golden.model, files, 0.14, None, enhance=True,
                     scores=scores)
    results = open_scorer(b).score_images([p for p, _ in files])
    assert [r.score for r in results] == pytest.approx(scores, rel=1e-5, abs=1e-6)
