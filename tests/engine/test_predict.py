"""predict_images end to end: verdict rule shared with metrics, overlays, per-file errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.evaluation.metrics import ThresholdError, verdicts
from engine.evaluation.predict import predict_images, results_to_json


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    from engine.config import make_config
    from engine.training.train import train

    root = tmp_path_factory.mktemp("pred")
    rng = np.random.default_rng(1)
    train_paths, test_paths = [], []
    for i in range(6):
        img = np.full((64, 64, 3), 100, np.uint8) + rng.integers(0, 10, (64, 64, 3), dtype=np.uint8)
        p = root / f"ok_{i}.png"
        cv2.imwrite(str(p), img)
        train_paths.append(p)
    for i, (h, w) in enumerate([(64, 64), (80, 120), (50, 40)]):  # non-square originals too
        img = np.full((h, w, 3), 100, np.uint8)
        if i:
            img[h // 4:h // 2, w // 4:w // 2] = 255
        p = root / "new" / f"part_{i}.png"
        p.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(p), img)
        test_paths.append(p)
    cfg = make_config("ae", overrides={"input_size": "64", "epochs": "1", "batch_size": "4",
                                       "num_workers": "0", "holdout_share": "0", "device": "cpu"})
    return train(cfg, train_paths, root / "run").checkpoint, test_paths


def test_predict_verdicts_overlays_and_errors(trained: tuple[Path, list[Path]],
                                              tmp_path: Path) -> None:
    ckpt, paths = trained
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    inputs = [paths[0], bad, paths[1], tmp_path / "missing.jpg", paths[2]]
    first = predict_images(ckpt, inputs, tmp_path / "out", image_threshold=1e9, device="cpu")
    scores = [r.score for r in first if r.score is not None]
    assert len(scores) == 3
    thr = float(np.median(scores))
    band = (min(scores), max(scores))  # lo <= thr <= hi
    res = predict_images(ckpt, inputs, tmp_path / "out", image_threshold=thr, review_band=band,
                         pixel_threshold=float(np.median(scores)), map_range=(0.0, 0.05),
                         device="cpu", batch_size=2, num_workers=2)
    assert [r.path for r in res] == [str(p) for p in inputs]
    assert res[1].error and "empty" in res[1].error and res[1].score is None
    assert res[3].error and "not found" in res[3].error and res[3].verdict is None
    good = [r for r in res if r.error is None]
    assert [r.score for r in good] == pytest.approx(scores, rel=1e-5)
    # the verdict rule is the one of engine.evaluation.metrics
    assert [r.verdict for r in good] == list(verdicts([r.score for r in good], thr, band))
    for r, p in zip(good, (paths[0], paths[1], paths[2])):
        png = cv2.imread(r.heatmap)
        assert png.shape == cv2.imread(str(p)).shape  # original resolution
    assert set(results_to_json(res)[0]) >= {"path", "score", "verdict", "heatmap", "error"}


def test_predict_rejects_band_without_threshold(trained: tuple[Path, list[Path]],
                                                tmp_path: Path) -> None:
    ckpt, paths = trained
    with pytest.raises(ThresholdError):
        predict_images(ckpt, paths, tmp_path, image_threshold=0.5, review_band=(0.6, 0.7))
