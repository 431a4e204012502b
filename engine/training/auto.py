"""`--preset auto` ("choose for me"): train a few DFR candidates and keep the one that best tells
synthetic defects from OK parts — chosen with OK images only.

The held-out OK images (the ones the OK-only threshold is set on) are scored clean and with
defects pasted in (engine.training.synthetic: scratches, cut-and-paste patches, stains, missing
regions); each candidate gets image AUROC (defective vs clean copies) and pixel AUROC (the pasted
masks) on them. The default (chosen on four real datasets) is kept unless another candidate beats
it on both; of those, the highest mean of the two wins (`pick`). On three real datasets the
synthetic image AUROC ranked the candidates as the real defects did on one, the pixel AUROC on
two, never both: one figure alone is no reason to leave the default (BENCHMARKS.md). The winner's
checkpoint becomes the run's;
every candidate's figures and the reason stay in the run's info ("auto"), its checkpoint in
candidates/<name>/ so it can still be evaluated or compared.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.config import DFRConfig, config_to_dict
from engine.errors import UserError
from engine.evaluation.metrics import image_auroc
from engine.models.checkpoint import CHECKPOINT_NAME
from engine.training.synthetic import synthetic_set
from engine.training.train import Progress, TrainProgress, TrainResult, train

log = logging.getLogger(__name__)

# Candidates: changes to the run's config, each a configuration that was best on some kind of
# defect (see engine/config.py for the measurements). The first is the `dfr` default (blocks.4-5).
CANDIDATES: dict[str, dict[str, Any]] = {
    "default": {},
    # small defects on a plain surface: the early stages too, the most unusual stage as the score
    # (the `dfr` default until 2026-12)
    "fine-detail": {"stages": (0, 1, 2, 3, 4, 5), "score_combine": "max"},
    "no-image-median": {"image_median": False},  # defects that cover most of the part
}
MIN_HOLDOUT = 4  # fewer held-out OK images cannot rank candidates
SYNTHETIC_PER_IMAGE = 2


def _inputs(paths: Sequence[Path], size: int, enhanced: bool) -> np.ndarray:
    from prefilter_qa_line.imagerule import model_input, read_image

    return np.stack([model_input(read_image(p), size, enhanced) for p in paths])  # (N, S, S, 3) uint8


@torch.inference_mode()
def _predict(model: torch.nn.Module, images: np.ndarray, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    scores, maps = [], []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i:i + batch]).permute(0, 3, 1, 2).float() / 255.0
        pred = model.eval()(x)
        scores.append(pred.score.float().numpy())
        maps.append(pred.anomaly_map.float().numpy())
    return np.concatenate(scores), np.concatenate(maps)


def judge(model: torch.nn.Module, clean: np.ndarray, defective: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """How well the model separates the synthetic defects: image and pixel AUROC, and their mean."""
    from sklearn.metrics import roc_auc_score

    s_clean, _ = _predict(model, clean)
    s_def, m_def = _predict(model, defective)
    y = np.r_[np.zeros(len(s_clean), bool), np.ones(len(s_def), bool)]
    img = float(image_auroc(y, np.r_[s_clean, s_def]))
    px = float(roc_auc_score(masks.ravel(), m_def.ravel())) if masks.any() and not masks.all() else float("nan")
    return {"image_auroc": img, "pixel_auroc": px, "score": float(np.nanmean([img, px]))}


def _scaled(progress: Progress, k: int, n: int) -> Progress:
    """Candidate k of n reports its progress as its share of the whole."""
    if progress is None:
        return None

    def report(p: TrainProgress) -> None:
        progress(dataclasses.replace(p, fraction=(k + p.fraction) / n,
                                     eta_s=None if p.eta_s is None else p.eta_s + (n - k - 1) * p.eta_s / max(
                                         1e-3, 1 - p.fraction)))

    return report


def train_auto(cfg: DFRConfig, train_images: Sequence[Path], holdout: Sequence[Path], run_dir: Path,
               progress: Progress = None, roi: np.ndarray | None = None) -> TrainResult:
    """Train each candidate, judge it on synthetic defects, keep the best as run_dir/checkpoint.pt."""
    if len(holdout) < MIN_HOLDOUT:
        raise UserError(f"--preset auto needs at least {MIN_HOLDOUT} held-out OK images to compare candidates, "
                        f"got {len(holdout)}: import more OK training images or raise holdout_share")
    clean = _inputs(holdout, cfg.input_size, cfg.enhance)
    defective, masks, kinds = synthetic_set(list(clean), cfg.seed, SYNTHETIC_PER_IMAGE)
    if roi is not None:
        masks &= np.asarray(roi, bool)[None]
    results: dict[str, TrainResult] = {}
    table: list[dict[str, Any]] = []
    for k, (name, changes) in enumerate(CANDIDATES.items()):
        c_cfg = dataclasses.replace(cfg, **changes, preset=f"auto/{name}")
        res = train(c_cfg, train_images, Path(run_dir) / "candidates" / name, _scaled(progress, k, len(CANDIDATES)),
                    roi=roi, calibration=holdout)
        figures = judge(res.model, clean, defective, masks)
        log.info("auto: candidate %s on %d synthetic defects: image AUROC %.3f, pixel AUROC %.3f", name,
                 len(defective), figures["image_auroc"], figures["pixel_auroc"])
        results[name] = res
        table.append({"candidate": name, "changes": {k2: list(v) if isinstance(v, tuple) else v
                                                     for k2, v in changes.items()}} | figures)
    best = pick(table)
    chosen = results[best["candidate"]]
    shutil.copyfile(chosen.checkpoint, Path(run_dir) / CHECKPOINT_NAME)
    figures = "; ".join(f"{r['candidate']} {r['image_auroc']:.3f} / {r['pixel_auroc']:.3f}" for r in table)
    rule = (f"it beat {table[0]['candidate']} on both" if best is not table[0]
            else "no other candidate beat it on both")
    why = (f"chose {best['candidate']}: {rule} image and pixel AUROC on {len(defective)} synthetic defects "
           f"({', '.join(sorted(set(kinds)))}) pasted into {len(clean)} held-out OK images ({figures})")
    log.info("auto: %s", why)
    info = dict(chosen.info) | {"auto": {"chosen": best["candidate"], "why": why, "candidates": table,
                                         "config": config_to_dict(chosen_config(cfg, best["candidate"]))}}
    return dataclasses.replace(chosen, checkpoint=Path(run_dir) / CHECKPOINT_NAME, info=info,
                               seconds=sum(r.seconds for r in results.values()))


def pick(table: list[dict[str, Any]]) -> dict[str, Any]:
    """The first row (the default) unless others beat it on both image and pixel AUROC; of those,
    the one with the highest mean of the two (the earlier one on a tie)."""
    base = table[0]
    better = [r for r in table[1:]
              if r["image_auroc"] > base["image_auroc"] and r["pixel_auroc"] > base["pixel_auroc"]]  # NaN: never
    return max(better, key=lambda r: (r["score"], -table.index(r))) if better else base


def chosen_config(cfg: DFRConfig, name: str) -> DFRConfig:
    return dataclasses.replace(cfg, **CANDIDATES[name], preset=f"auto/{name}")
