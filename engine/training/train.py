"""Training: one plain function with a progress callback (nanoGPT style) for both model families.

The caller (the job's child process) sets torch's thread count and passes the OK training
images with the `holdout_share` for the OK-only threshold already taken out (the job's dataset
snapshot does that, `engine.jobs.queue.dataset_snapshot`).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.config import AEConfig, DFRConfig
from engine.errors import UserError
from engine.intake.images import IMAGE_RULE
from engine.models.checkpoint import CHECKPOINT_NAME, resolve_device, save_checkpoint
from engine.training.data import iterate, make_loader
from engine.workspace import FEATURE_CACHE_NAME

log = logging.getLogger(__name__)


@dataclass
class TrainProgress:
    epoch: int  # 1-based; 0 before the first training epoch
    epochs: int
    step: int  # within the current phase
    steps: int
    loss: float  # last step's loss (nan outside the "train" phase)
    eta_s: float | None  # seconds left for the whole run, when it can be estimated
    fraction: float  # 0..1 of the whole run
    phase: str  # "features" | "pca" | "train"


@dataclass
class TrainResult:
    checkpoint: Path
    epochs: int
    final_loss: float
    seconds: float
    device: str
    info: dict = field(default_factory=dict)  # latent_dim, weights sha256, loss history, image rule...
    model: torch.nn.Module | None = field(default=None, repr=False)  # the trained model, eval mode, on CPU


Progress = Callable[[TrainProgress], None] | None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _optimizer(cfg: AEConfig | DFRConfig, params: Iterator[torch.nn.Parameter], total_steps: int):
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total_steps) / max(total_steps, 1))))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return opt, sched


# Seconds per unit of each phase relative to a backbone pass of one image (DFR) or a training
# step of one image (AE), measured on the 2-core CPU (DFR default, tiles: feature pass 0.047 s/img,
# an epoch 0.009 s/img, statistics with both terms 0.09 s/img, evaluation 0.12 s/img; AE: an epoch
# 0.18 s/img, evaluation 0.026). A phase's own measured rate replaces its prior once it runs;
# later phases are scaled from it.
PHASE_COST = {"features": 1.0, "pca": 0.0, "train": 0.2, "statistics": 1.9, "evaluation": 2.5}
AE_PHASE_COST = {"train": 1.0, "statistics": 0.4, "evaluation": 0.15}


class _Clock:
    """Progress with an ETA for the whole job. Work is counted in units (images per phase); each
    phase has a relative cost (`PHASE_COST`) and its seconds per unit are measured while it runs,
    so the ETA covers the phases still to come (the evaluation after training included) at the
    current pace scaled by their cost, instead of at the current phase's rate."""

    def __init__(self, progress: Progress, epochs: int, plan: dict[str, float],
                 cost: dict[str, float] | None = None) -> None:
        self.progress, self.epochs, self.plan = progress, epochs, dict(plan)
        self.cost = {p: (cost or PHASE_COST).get(p, 1.0) for p in plan}
        self.total = max(sum(v for p, v in plan.items() if p != "evaluation"), 1e-9)
        self.done = {p: 0.0 for p in plan}
        self.t_phase, self.phase = time.perf_counter(), None

    def tick(self, units: float, *, epoch: int, step: int, steps: int, loss: float, phase: str) -> None:
        now = time.perf_counter()
        if phase != self.phase:
            self.phase, self.t_phase = phase, now
        self.done[phase] = self.done.get(phase, 0.0) + units
        if self.progress is None:
            return
        frac = min(sum(v for p, v in self.done.items() if p != "evaluation") / self.total, 1.0)
        eta = None
        if self.done[phase] > 0 and now > self.t_phase and self.cost.get(phase, 1.0) > 0:
            rate = (now - self.t_phase) / self.done[phase]  # seconds per unit in this phase
            per_cost = rate / self.cost.get(phase, 1.0)
            left = {p: max(self.plan.get(p, 0.0) - self.done.get(p, 0.0), 0.0) for p in self.plan}
            eta = rate * left.get(phase, 0.0) + sum(n * self.cost[p] * per_cost for p, n in left.items()
                                                    if p != phase)
        self.progress(TrainProgress(epoch=epoch, epochs=self.epochs, step=step, steps=steps, loss=float(loss),
                                    eta_s=eta, fraction=frac, phase=phase))


def _train_loop(cfg, model, batches: Callable[[int], Iterator[torch.Tensor]], steps_per_epoch: int,
                loss_fn: Callable[[torch.Tensor], torch.Tensor], device: torch.device, clock: _Clock) -> list[float]:
    """Epochs of optimisation; returns the mean loss per epoch."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt, sched = _optimizer(cfg, params, cfg.epochs * steps_per_epoch)
    use_amp = bool(cfg.amp) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history: list[float] = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        total, count = 0.0, 0
        for step, x in enumerate(batches(epoch), start=1):
            x = x.to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=use_amp):
                loss = loss_fn(x)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            total, count = total + float(loss.detach()) * x.shape[0], count + x.shape[0]
            clock.tick(x.shape[0], epoch=epoch, step=step, steps=steps_per_epoch, loss=float(loss.detach()),
                       phase="train")
        if not math.isfinite(total):
            raise UserError(f"training diverged (loss {total}) at epoch {epoch}; try a lower lr")
        history.append(total / max(count, 1))
        log.info("epoch %d/%d loss %.6f", epoch, cfg.epochs, history[-1])
    model.eval()
    return history


def _set_roi(model: torch.nn.Module, roi: np.ndarray | None) -> None:
    """Attach the ROI as soon as the model exists: the DFR statistics count its positions only."""
    if roi is not None:
        model.set_roi(torch.as_tensor(np.asarray(roi, dtype=bool)))


def _train_ae(cfg: AEConfig, paths: list[Path], device: torch.device, progress: Progress,
              roi: np.ndarray | None, eval_images: int = 0) -> tuple:
    from engine.models import build_ae

    model = build_ae(cfg).to(device)
    _set_roi(model, roi)
    loader = make_loader(paths, cfg, train=True)
    plan = {"train": cfg.epochs * len(paths), "statistics": len(paths) if model.judge is not None else 0,
            "evaluation": eval_images}
    clock = _Clock(progress, cfg.epochs, plan, AE_PHASE_COST)

    def batches(epoch: int) -> Iterator[torch.Tensor]:
        return (x for _, x in iterate(loader))

    history = _train_loop(cfg, model, batches, len(loader), model.loss, device, clock)
    return model, history, _fit_judge(cfg, model, paths, device, clock) if model.judge is not None else {}


@torch.no_grad()
def _fit_judge(cfg: AEConfig, model: torch.nn.Module, paths: list[Path], device: torch.device, clock: _Clock) -> dict:
    """The 'features' map's OK statistics: each stage's feature error per position on the training
    images, reconstructed by the trained model (as they are, without augmentation)."""
    def errors() -> Iterator[torch.Tensor]:
        for _, x in iterate(make_loader(paths, cfg, train=False, shuffle=False)):
            x = x.to(device)
            yield model.judge.stage_errors(x, model.reconstruct(x))
            clock.tick(x.shape[0], epoch=cfg.epochs, step=1, steps=1, loss=float("nan"), phase="statistics")

    n = model.judge.fit(errors())
    log.info("AE feature map: stages %s, OK statistics from %d training images", cfg.map_stages, n)
    features = model.judge.features
    return {"map_statistics": f"{n} training images", "weights_sha256": features.weights_sha256,
            "weights_source": features.weights_source}


def _position_picker(cfg: DFRConfig, m: int) -> Callable[[], np.ndarray | None]:
    """A fresh random `train_positions` share of the m×m map positions for each training step
    (None: all of them).

    The 1×1-conv autoencoder sees every position independently and neighbouring positions are
    near-duplicates after the local average, so a random share per step trains about as well
    as all of them at a fraction of the cost (measured on all four datasets, BENCHMARKS.md).
    """
    if cfg.train_positions >= 1.0:
        return lambda: None
    k = max(1, round(cfg.train_positions * m * m))
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    return lambda: torch.randperm(m * m, generator=gen)[:k].numpy()


def _at(f: torch.Tensor, positions: np.ndarray | None) -> torch.Tensor:
    """Stage features (B, C, m, m) -> those positions (B, C, k, 1) (all when None)."""
    if positions is None:
        return f
    return f.flatten(2)[:, :, torch.as_tensor(positions, device=f.device)].unsqueeze(-1)


MIN_CALIBRATION = 4  # fewer held-out OK images give no spread: the training images' cross-fitted one instead
WHOLE_FIT_IMAGES = 2000  # the whole-image PCA is fitted on at most this many training images
NEAREST_CALIBRATION_IMAGES = 200  # without held-out images: training images whose distances calibrate


@torch.no_grad()
def _fit_nearest(cfg: DFRConfig, model: torch.nn.Module, batches: Callable[[int], Iterator[torch.Tensor]], n: int,
                 calibration: Sequence[Path], device: torch.device, fine_cells: Sequence[torch.Tensor] = ()) -> dict:
    """DFR's nearest-OK-feature terms (engine/models/dfr/nearest.py): the memory from the training
    images, then the heatmap terms' spread on OK images the model was not fitted on — the held-out
    ones, or else the first training images, each without the memory rows it gave. The fine term
    (model.fine) the same, from the fine stage's cells of the training images in order (`fine_cells`)."""
    nearest, fine = model.nearest, model.fine
    held_out = len(calibration) >= MIN_CALIBRATION
    own: list[tuple[torch.Tensor, torch.Tensor]] = []  # (cells, reconstruction map) of training images

    def cells() -> Iterator[torch.Tensor]:
        for f in batches(0):
            f = f.to(device).float()
            c = nearest.cells(f)
            if not held_out and sum(len(x) for x, _ in own) < NEAREST_CALIBRATION_IMAGES:
                own.append((c, model.reconstruction_map(f)))
            yield c

    nearest.fit(cells(), n, cfg.nearest_size, cfg.seed, cfg.nearest_pick)
    if fine is not None:
        fine.fit((c.to(device).float() for c in fine_cells), n, cfg.fine_size, cfg.seed)
    fine_dist = []
    if held_out:
        recon, dist = [], []
        for _, x in iterate(make_loader(list(calibration), cfg, train=False, shuffle=False)):
            f, f_fine, _ = model.features.tapped(x.to(device))
            recon.append(model.reconstruction_map(f).cpu())
            dist.append(nearest(f).cpu())
            if fine is not None:
                fine_dist.append(fine(f_fine).cpu())
        source = f"{len(calibration)} held-out OK images"
    else:  # each training image's distance without its own memory rows (with one image: with them)
        recon, dist, start = [], [], 0
        for c, r in own:
            ids = torch.arange(start, start + len(c), device=device)
            recon.append(r.cpu())
            dist.append(nearest.distances(c, ids if n > 1 else None).cpu())
            start += len(c)
        if fine is not None:  # the same images: the first ones, in order
            first = 0
            for c in fine_cells:
                if first >= start:
                    break
                ids = torch.arange(first, first + len(c), device=device)
                fine_dist.append(fine.distances(c.to(device).float(), ids if n > 1 else None).cpu())
                first += len(c)
        source = f"{start} training images (without their own memory rows)"
    nearest.calibrate(torch.cat(recon), torch.cat(dist))
    nearest.owner = None
    log.info("DFR nearest-feature term: %d OK vectors, calibrated on %s", len(nearest.memory), source)
    info = {"nearest_memory": len(nearest.memory), "nearest_calibration": source,
            "nearest_calib_mean": nearest.calib_mean.tolist(), "nearest_calib_std": nearest.calib_std.tolist()}
    if fine is not None:
        fine.calibrate(None, torch.cat(fine_dist))
        fine.owner = None
        info |= {"fine_memory": len(fine.memory), "fine_calib": [float(fine.calib_mean[1]), float(fine.calib_std[1])]}
    return info


@torch.no_grad()
def _fit_whole(cfg: DFRConfig, model: torch.nn.Module, batches: Callable[[int], Iterator[torch.Tensor]],
               calibration: Sequence[Path], device: torch.device, single: Sequence[torch.Tensor] = ()) -> dict:
    """DFR's whole-image term (engine/models/dfr/whole.py; at the grid and, with whole_global, at
    one cell): the principal components of the training images' vectors, then the spread of the
    score's parts on OK images the model was not fitted on — the held-out ones, or else the
    training images (peaks as they are, whole-image errors each from a fit without it). `single`:
    the training images' single-cell vectors (B, P) read from the pooled stages (global_stages)."""
    parts, hw = [w for w in (model.whole, model.whole_global) if w is not None], (cfg.input_size, cfg.input_size)
    given = [part is model.whole_global and bool(single) for part in parts]  # read in the feature pass
    held_out = len(calibration) >= MIN_CALIBRATION
    vecs: list[list[torch.Tensor]] = [list(single) if g else [] for g in given]
    peaks = []
    for f in batches(0):
        f = f.to(device).float()
        for v, part, g in zip(vecs, parts, given):
            if not g:
                v.append(part.vectors(f).cpu())
        if not held_out:
            peaks.append(model.judge(f, hw)[2].cpu())
    vectors = [torch.cat(v) for v in vecs]  # (N, D) each
    pick = torch.randperm(len(vectors[0]), generator=torch.Generator().manual_seed(cfg.seed))[:WHOLE_FIT_IMAGES]
    for part, v in zip(parts, vectors):
        part.fit(v[pick], cfg.whole_variance)
    if held_out:
        cal_peaks, cal_errors = [], [[] for _ in parts]
        for _, x in iterate(make_loader(list(calibration), cfg, train=False, shuffle=False)):
            f, _, grid = model.features.tapped(x.to(device))
            cal_peaks.append(model.judge(f, hw)[2].cpu())
            for e, part in zip(cal_errors, parts):
                e.append(part(model.global_input(f, grid) if part is model.whole_global else f).cpu())
        for part, e in zip(parts, cal_errors):
            part.calibrate(torch.cat(cal_peaks), torch.cat(e))
        source = f"{len(calibration)} held-out OK images"
    else:
        for part, v in zip(parts, vectors):
            part.calibrate(torch.cat(peaks), part.cross_errors(v[pick], cfg.whole_variance))
        source = f"{len(pick)} training images (cross-fitted)"
    whole = model.whole
    log.info("DFR whole-image term: d=%s, calibrated on %s", " and ".join(
        f"{part.basis.shape[1]} of {part.basis.shape[0]}" for part in parts), source)
    info = {"whole_dim": int(whole.basis.shape[1]), "whole_calibration": source,
            "whole_calib_mean": whole.calib_mean.tolist(), "whole_calib_std": whole.calib_std.tolist()}
    if model.whole_global is not None:
        info["whole_global_dim"] = int(model.whole_global.basis.shape[1])
    return info


def _train_dfr(cfg: DFRConfig, paths: list[Path], run_dir: Path, device: torch.device, progress: Progress,
               roi: np.ndarray | None, eval_images: int = 0, calibration: Sequence[Path] = ()) -> tuple:
    """Feature pass (stats + cache) -> PCA latent width -> epochs over cached features."""
    from engine.models import build_dfr, build_features
    from engine.models.dfr import FeatureStats
    from engine.models.dfr.features import POOLED_GRID, Taps
    from engine.models.dfr.model import roi_cells
    from engine.models.dfr.nearest import grid_cells
    from engine.models.dfr.whole import WholeImage
    from engine.training.feature_cache import FeatureCache, feature_pass

    feats = build_features(cfg).to(device)
    n, c, m = len(paths), feats.out_channels, cfg.map_size
    cache = FeatureCache.create(run_dir / FEATURE_CACHE_NAME, (n, c, m, m), cfg.feature_cache_gb)
    clock = _Clock(progress, cfg.epochs, {"features": n, "pca": 0.0, "train": cfg.epochs * n, "statistics": n,
                                          "evaluation": eval_images})
    stats = FeatureStats(c)
    # (B, P, c) float16: the fine stage's cells of the training images, in order, all kept until the
    # memory is drawn from them (80 KB a training image at the default: 1024 cells x 40 channels)
    fine_cells: list[torch.Tensor] = []
    # (B, P): the whole-image term's single cell of the training images, read from the pooled stages
    # (global_stages) inside the ROI, as the model will (2.8 KB a training image at the default)
    single: list[torch.Tensor] = []
    cell = WholeImage(feats.pooled_channels, POOLED_GRID, 1).to(device) if feats.pooled_stages else None
    if cell is not None:
        inside = roi_cells(roi, POOLED_GRID)
        cell.set_region(None if inside is None else torch.from_numpy(inside))

    def keep(taps: Taps) -> None:
        if taps.fine is not None:
            fine_cells.append(grid_cells(taps.fine, m // cfg.fine_cells()).half().cpu())
        if cell is not None:
            single.append(cell.vectors(taps.pooled.float()).cpu())

    try:
        feature_pass(feats, make_loader(paths, cfg, train=True, shuffle=False), device, stats, cache,
                     cfg.pca_samples_per_image, cfg.seed,
                     lambda step, steps: clock.tick(n / steps, epoch=0, step=step, steps=steps,
                                                    loss=float("nan"), phase="features"), keep)
        pca_d = stats.latent_dim(cfg.pca_variance, standardised=cfg.feature_standardise)
        d = min(cfg.latent_dim or pca_d, c)
        clock.tick(0, epoch=0, step=1, steps=1, loss=float("nan"), phase="pca")
        log.info("DFR: %d channels, PCA %.0f%% -> d=%d, using d=%d", c, 100 * cfg.pca_variance, pca_d, d)
        model = build_dfr(cfg, feats, d).to(device)
        _set_roi(model, roi)
        model.fit_feature_scaling(stats)
        bs = cfg.batch_size
        steps = math.ceil(n / bs)
        pick = _position_picker(cfg, m)
        if cache is not None:
            gen = torch.Generator().manual_seed(cfg.seed)

            def batches(epoch: int, positions: Callable[[], np.ndarray | None] = lambda: None) -> Iterator[torch.Tensor]:
                perm = torch.randperm(n, generator=gen).numpy()
                return (cache.read(perm[i:i + bs], positions()) for i in range(0, n, bs))

            def train_batches(epoch: int) -> Iterator[torch.Tensor]:  # each step at its random positions
                return batches(epoch, pick)
        else:
            loader = make_loader(paths, cfg, train=True)

            def batches(epoch: int) -> Iterator[torch.Tensor]:
                return (feats(x.to(device)) for _, x in iterate(loader))

            def train_batches(epoch: int) -> Iterator[torch.Tensor]:
                return (_at(f, pick()) for f in batches(epoch))

        history = _train_loop(cfg, model, train_batches, steps, model.loss, device, clock)
        model.eval()
        passes = max(model.normaliser.passes, 1)

        def errors() -> Iterator[torch.Tensor]:  # a statistics pass over the training images, ticked
            for x in batches(0):
                yield model.errors(x.to(device))
                clock.tick(x.shape[0] / passes, epoch=cfg.epochs, step=1, steps=1, loss=float("nan"), phase="statistics")

        model.normaliser.fit(errors, n)
        nearest = {} if model.nearest is None else _fit_nearest(cfg, model, batches, n, calibration, device,
                                                                fine_cells)
        whole = {} if model.whole is None else _fit_whole(cfg, model, batches, calibration, device, single)
    finally:
        if cache is not None:
            cache.delete()
    info = {"latent_dim": d, "pca_latent_dim": pca_d, "channels": c, "stage_channels": feats.channels,
            "weights_sha256": feats.weights_sha256, "weights_source": feats.weights_source,
            "norm_mean": feats.mean.flatten().tolist(), "norm_std": feats.std.flatten().tolist(),
            "feature_cache": cache is not None} | nearest | whole
    return model, history, info


def train(config: AEConfig | DFRConfig, train_images: Sequence[Path], run_dir: Path,
          progress: Progress = None, roi: np.ndarray | None = None, eval_images: int = 0,
          calibration: Sequence[Path] = ()) -> TrainResult:
    """Train on OK images, write run_dir/checkpoint.pt, return what happened. `eval_images`: how
    many images the evaluation that follows will score (counted in the ETA, not in the fraction);
    `calibration`: held-out OK images (never trained on) that weigh the parts of DFR's score."""
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in train_images]
    if not paths:
        raise UserError("no OK training images: import OK images into the dataset's train split first")
    seed_everything(config.seed)
    device = resolve_device(config.device)
    if config.model == "ae":
        model, history, info = _train_ae(config, paths, device, progress, roi, eval_images)
    else:
        model, history, info = _train_dfr(config, paths, run_dir, device, progress, roi, eval_images,
                                          [Path(p) for p in calibration])
    seconds = time.perf_counter() - t0
    info = {
        **info,
        "loss_history": history,
        "image_rule": IMAGE_RULE,
        "train_images": [str(p) for p in paths],
        "train_seconds": seconds,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }
    final = history[-1] if history else float("nan")
    ckpt = save_checkpoint(run_dir / CHECKPOINT_NAME, model, config, config.epochs,
                           metrics={"final_loss": final}, roi=roi, info=info)
    return TrainResult(checkpoint=ckpt, epochs=config.epochs, final_loss=final, seconds=seconds,
                       device=str(device), info=info, model=model.cpu().eval())
