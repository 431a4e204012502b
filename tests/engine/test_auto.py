"""`--preset auto`: synthetic defects with honest masks, candidates judged on them, the best kept and
recorded with the reason, through the real CLI and worker."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine.config import make_config
from engine.training import auto
from engine.training.synthetic import KINDS, add_defect, synthetic_set
from tests.conftest import TINY_DFR, cli


def _part(size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 120, np.uint8)
    cv2.circle(img, (size // 2, size // 2), size // 3, (180, 170, 160), -1)
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", KINDS)
def test_each_defect_changes_what_its_mask_says(kind: str) -> None:
    img = _part(128)
    out, mask = add_defect(img, kind, np.random.default_rng(3))
    assert mask.dtype == bool and 0 < mask.mean() < 0.5
    changed = np.any(out != img, axis=-1)
    near = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0  # soft / anti-aliased edges
    assert not (changed & ~near).any(), "pixels changed outside the mask"
    assert changed[mask].mean() > 0.5, "the mask marks pixels that did not change"


def test_synthetic_set_is_deterministic_and_takes_every_kind() -> None:
    imgs = [_part(64, s) for s in range(3)]
    a, ma, kinds = synthetic_set(imgs, seed=7, per_image=2)
    b, mb, _ = synthetic_set(imgs, seed=7, per_image=2)
    assert a.shape == (6, 64, 64, 3) and ma.shape == (6, 64, 64)
    assert np.array_equal(a, b) and np.array_equal(ma, mb) and set(kinds) == set(KINDS)
    assert not np.array_equal(a, synthetic_set(imgs, seed=8, per_image=2)[0])


def test_judge_prefers_a_model_that_sees_the_defects() -> None:
    """A 'model' scoring the local brightness change finds the pasted defects; a constant one cannot."""
    from engine.models.base import Prediction

    rng = np.random.default_rng(0)  # plain surfaces: only the pasted defects stand out
    clean = np.clip(128 + rng.normal(0, 3, (8, 64, 64, 3)), 0, 255).astype(np.uint8)
    defective, masks, _ = synthetic_set(list(clean), seed=1)

    class Contrast(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> Prediction:
            g = x.mean(1)  # (B, H, W)
            amap = (g - torch.nn.functional.avg_pool2d(g[:, None], 9, 1, 4, count_include_pad=False)[:, 0]).abs()
            return Prediction(score=amap.flatten(1).amax(1), anomaly_map=amap)

    class Blind(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> Prediction:
            return Prediction(score=torch.zeros(len(x)), anomaly_map=torch.zeros(x.shape[0], *x.shape[2:]))

    good, blind = auto.judge(Contrast(), clean, defective, masks), auto.judge(Blind(), clean, defective, masks)
    assert blind["score"] == pytest.approx(0.5)  # a model that sees nothing ranks at chance
    assert good["image_auroc"] > 0.7 and good["pixel_auroc"] > 0.6 and good["score"] > blind["score"] + 0.15


def test_auto_keeps_the_default_unless_another_candidate_beats_it_on_image_and_pixel_auroc() -> None:
    def row(name: str, img: float, px: float) -> dict:
        return {"candidate": name, "image_auroc": img, "pixel_auroc": px, "score": (img + px) / 2}

    default = row("default", 0.97, 0.93)
    # the fabric's case: fine-detail ahead on the mean (pixel) but behind on the image: default kept
    assert auto.pick([default, row("fine-detail", 0.966, 0.95), row("no-image-median", 0.97, 0.92)]) is default
    both = row("fine-detail", 0.98, 0.94)
    more = row("no-image-median", 0.975, 0.96)  # also ahead on both, and on the mean
    assert auto.pick([default, both, more]) is more
    assert auto.pick([default, both, row("no-image-median", 0.99, float("nan"))]) is both  # NaN is no evidence
    assert auto.pick([default]) is default


def test_auto_needs_held_out_ok_images(tmp_path: Path) -> None:
    cfg = make_config("dfr", "auto", {"backbone_weights": "random", "input_size": "64"})
    with pytest.raises(Exception, match="at least 4 held-out OK images"):
        auto.train_auto(cfg, [tmp_path / "a.png"], [tmp_path / "b.png"], tmp_path / "run")


def test_auto_run_through_the_worker_keeps_the_best_candidate(tmp_path: Path, tiny_demo: Path) -> None:
    home = tmp_path / "ws"
    cli("import", str(tiny_demo), "--name", "tiny", home=home)
    args = ["train", "--dataset", "tiny", "--model", "dfr", "--preset", "auto", "--json", "--set", "holdout_share=0.4"]
    for s in TINY_DFR:
        args += ["--set", s]
    run_id = json.loads(cli(*args, home=home).stdout)["run_id"]
    cli("worker", "--idle-exit", "0", home=home, timeout=1200)
    run = json.loads(cli("runs", str(run_id), "--json", home=home).stdout)
    assert run["status"] == "succeeded" and run["metrics"], run
    chosen = run["info"]["auto"]
    table = {r["candidate"]: r for r in chosen["candidates"]}
    assert set(table) == set(auto.CANDIDATES)
    best = auto.pick(chosen["candidates"])
    assert chosen["chosen"] == best["candidate"] and best["candidate"] in chosen["why"]
    assert run["config"]["preset"] == f"auto/{best['candidate']}"  # the run is the chosen candidate now
    for name, changes in auto.CANDIDATES.items():
        assert (home / "runs" / str(run_id) / "candidates" / name / "checkpoint.pt").is_file()
    assert all(run["config"][k] == (list(v) if isinstance(v, tuple) else v)
               for k, v in auto.CANDIDATES[best["candidate"]].items())
