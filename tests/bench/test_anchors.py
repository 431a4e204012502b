"""Smoke run of `bench.anchors` (anomalib's PaDiM, DFM, PatchCore) on a tiny seed-layout folder.

Random backbone weights and 64² inputs: this checks that the script runs end to end and writes
rows `bench.accuracy --suite` can merge, not how good the anchors are.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("anomalib")

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
ROW_KEYS = {"preset", "status", "image_auroc", "image_auroc_ci95", "pixel_auroc", "aupro", "train_s",
            "eval_s", "per_defect"}


def _part(rng: np.random.Generator, defect: bool) -> tuple[np.ndarray, np.ndarray]:
    """A 64² grey part with texture; a NOK one has a bright scratch (and its mask)."""
    img = np.full((64, 64, 3), 110, np.uint8)
    cv2.circle(img, (32, 32), 20, (160, 160, 160), -1)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    if defect:
        y = int(rng.integers(20, 44))
        cv2.line(img, (18, y), (46, y + 4), (250, 250, 250), 3)
        cv2.line(mask, (18, y), (46, y + 4), 255, 3)
    return img, mask


def _dataset(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for sub, n, nok in (("train/ok", 12, False), ("test/ok", 4, False), ("test/nok/scratch", 4, True)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, mask = _part(rng, nok)
            cv2.imwrite(str(root / sub / f"{i:03d}.png"), img)
            if nok:
                (root / "test/masks/nok/scratch").mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / "test/masks/nok/scratch" / f"{i:03d}.png"), mask)
    return root


def test_anchors_smoke(tmp_path: Path) -> None:
    data, out = _dataset(tmp_path / "parts"), tmp_path / "anchors.json"
    env = os.environ | {"PREFILTER_QA_BENCH_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "bench.anchors", "--data", str(data), "--weights", "random",
                           "--size", "64", "--batch-size", "4", "--coreset-ratio", "0.05", "--json", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "| anchor:padim" in proc.stdout  # the table
    rep = json.loads(out.read_text())
    assert rep["data"] == rep["data"] | {"train_ok": 11, "holdout": 1, "test_ok": 4, "test_nok": 4, "masks": 4}
    assert [r["preset"] for r in rep["rows"]] == ["anchor:padim", "anchor:dfm", "anchor:patchcore"]
    for row in rep["rows"]:
        assert row["status"] == "succeeded", row.get("note")
        assert ROW_KEYS <= set(row)
        for key in ("image_auroc", "pixel_auroc", "aupro", "train_s", "eval_s"):
            assert math.isfinite(row[key]), (row["preset"], key)
        assert 0.0 <= row["image_auroc"] <= 1.0 and len(row["image_auroc_ci95"]) == 2
        assert set(row["per_defect"]) == {"scratch"}
        w = row["weights"]
        assert w["keys_loaded"] > 100 and w["features_max_abs_diff_vs_product"] < 1e-4
    assert rep["rows"][2]["settings"]["layers"] == ["blocks.2", "blocks.3"]
