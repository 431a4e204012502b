"""evaluate_run end to end on tiny synthetic images with a tiny trained autoencoder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.evaluation.evaluate import EvalItem, evaluate_run


def _write_images(root: Path) -> dict:
    """4 OK training images, 3 OK + 3 NOK test images (bright square), masks, one broken file."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)

    def part(defect: bool, i: int) -> tuple[np.ndarray, np.ndarray]:
        img = np.full((64, 64, 3), 90, np.uint8) + rng.integers(0, 12, (64, 64, 3), dtype=np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        if defect:
            y, x = 10 + 8 * i, 12 + 6 * i
            img[y:y + 12, x:x + 12] = 250
            mask[y:y + 12, x:x + 12] = 255
        return img, mask

    out: dict = {"train": [], "items": []}
    for i in range(4):
        p = root / f"train_{i}.png"
        cv2.imwrite(str(p), part(False, i)[0])
        out["train"].append(p)
    for i in range(6):
        nok = i >= 3
        img, mask = part(nok, i - 3)
        p = root / f"test_{i}.png"
        cv2.imwrite(str(p), img)
        mp = None
        if nok:  # the last NOK mask has the wrong size: reported, left out of pixel metrics
            mp = root / f"test_{i}_mask.png"
            cv2.imwrite(str(mp), mask if i < 5 else mask[:32])
        out["items"].append(EvalItem(100 + i, p, "nok" if nok else "ok",
                                     ("blob" if i == 3 else "spot") if nok else None, mp))
    bad = root / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out["items"].append(EvalItem(999, bad, "ok", None, None))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from engine.config import make_config
    from engine.training.train import train

    root = tmp_path_factory.mktemp("eval")
    data = _write_images(root / "img")
    cfg = make_config("ae", overrides={"input_size": "64", "epochs": "1", "batch_size": "4",
                                       "num_workers": "0", "holdout_share": "0.25",
                                       "device": "cpu"})
    # train() takes the OK images with the holdout already split off (the job's snapshot does it)
    paths, data["holdout"] = data["train"][1:], data["train"][:1]
    res = train(cfg, paths, root / "run")
    return res.checkpoint, data


def test_evaluate_run_end_to_end(trained: tuple[Path, dict], tmp_path: Path) -> None:
    ckpt, data = trained
    seen: list[float] = []
    res = evaluate_run(ckpt, data["items"], tmp_path / "ev", holdout=data["holdout"],
                       progress=lambda f, msg: seen.append(f), device="cpu", batch_size=4,
                       num_workers=2)
    # the broken file and the bad mask are reported, the 6 good images are scored
    assert [p for p, _ in res.failed] == [str(data["items"][5].mask_path),
                                          str(data["items"][-1].path)]
    assert "64" in res.failed[0][1] and "32" in res.failed[0][1]
    assert len(res.images) == 6 and len(res.holdout_scores) == 1
    assert seen[-1] == 1.0 and seen == sorted(seen)
    m = res.metrics
    assert m["n_ok"] == 3 and m["n_nok"] == 3
    assert m["image_auroc"] is not None and len(m["image_auroc_ci95"]) == 2
    assert m["pixel_auroc"] is not None and 0 <= m["aupro"] <= 1
    assert m["pixel_n_images"] == 5  # 3 OK + 2 NOK with masks; the unmasked NOK is left out
    assert set(m["per_defect"]) == {"blob", "spot"}
    assert m["resolution_note"].endswith("64x64")
    assert m["map_range"]["vmax"] > m["map_range"]["vmin"]
    assert res.auto_threshold["rule"] == "f1_max"
    assert res.auto_threshold["image"] == m["f1_threshold"]
    assert res.auto_threshold["pixel"] == m["pixel_threshold"]["f1_max"] is not None
    # files
    ev = tmp_path / "ev"
    on_disk = json.loads((ev / "metrics.json").read_text())
    assert on_disk["image_auroc"] == m["image_auroc"] and on_disk["failed"][1]["reason"]
    rows = list(csv.DictReader((ev / "scores.csv").open()))
    assert [int(r["image_id"]) for r in rows] == [100, 101, 102, 103, 104, 105]
    for r, s in zip(rows, res.images):
        hm = np.load(ev / r["heatmap"])
        assert hm.dtype == np.float16 and hm.shape == (64, 64)
        assert float(r["score"]) == pytest.approx(s.score)
    assert not list(ev.rglob("*.tmp"))


def test_evaluate_ok_only_and_roi(trained: tuple[Path, dict], tmp_path: Path) -> None:
    ckpt, data = trained
    ok_items = [it for it in data["items"] if it.label == "ok"][:3]
    roi = np.zeros((128, 128), bool)  # any size: resized (nearest) to the input
    roi[:, :64] = True
    res = evaluate_run(ckpt, ok_items, tmp_path / "ev", holdout=data["holdout"], roi=roi,
                       device="cpu")
    m = res.metrics
    assert m["image_auroc"] is None and m["pixel_auroc"] is None and m["f1_max"] is None
    assert res.auto_threshold["rule"] == "ok_only"
    assert res.auto_threshold["image"] == m["ok_only_threshold"] is not None
    assert res.auto_threshold["pixel"] == m["pixel_threshold"]["ok_quantile"] is not None
    hm = np.load(tmp_path / "ev" / res.images[0].heatmap)
    assert float(np.abs(hm[:, 32:]).max()) == 0.0  # outside the ROI the map is zero


def test_the_run_threshold_policy_picks_the_rule_and_the_band(trained: tuple[Path, dict], tmp_path: Path) -> None:
    """auto_threshold / auto_review_band (a retrain carries its parent's) shape the stored threshold."""
    from engine.config import make_config
    from engine.evaluation.metrics import verdicts
    from engine.training.train import train

    _, data = trained
    cfg = make_config("ae", overrides={"input_size": "64", "epochs": "1", "batch_size": "4", "num_workers": "0",
                                       "device": "cpu", "auto_threshold": "zero_escape", "auto_review_band": "true"})
    ckpt = train(cfg, data["train"][1:], tmp_path / "run").checkpoint
    res = evaluate_run(ckpt, data["items"][:6], tmp_path / "ev", holdout=data["holdout"], device="cpu")
    nok = [s.score for s, it in zip(res.images, data["items"][:6]) if it.label == "nok"]
    auto = res.auto_threshold
    assert auto["rule"] == "zero_escape" and auto["image"] == pytest.approx(min(nok))
    lo, hi = auto["band"]
    assert lo <= auto["image"] <= hi
    verdicts([0.0], auto["image"], (lo, hi))  # a band the verdict rule accepts
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["auto_threshold"]["band"] == [lo, hi]
