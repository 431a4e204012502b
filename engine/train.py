"""Training: one plain function with a progress callback (nanoGPT style) for both model families.

The caller (the job's child process) sets torch's thread count and passes the OK training
images with the `holdout_share` for the OK-only threshold already taken out (the job's dataset
snapshot does that; `engine.data.split_holdout` is a helper for notebook use).
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

from engine.checkpoint import CHECKPOINT_NAME, resolve_device, save_checkpoint
from engine.config import AEConfig, DFRConfig
from engine.data import make_loader
from engine.errors import UserError
from engine.images import IMAGE_RULE

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


class _Clock:
    """Progress reporting with an ETA from the measured time per unit of work."""

    def __init__(self, progress: Progress, epochs: int, units_total: float) -> None:
        self.progress, self.epochs, self.total = progress, epochs, max(units_total, 1e-9)
        self.t0, self.done = time.perf_counter(), 0.0

    def tick(self, units: float, *, epoch: int, step: int, steps: int, loss: float, phase: str) -> None:
        self.done += units
        if self.progress is None:
            return
        elapsed = time.perf_counter() - self.t0
        frac = min(self.done / self.total, 1.0)
        eta = elapsed * (1.0 - frac) / frac if frac > 0 else None
        self.progress(TrainProgress(epoch=epoch, epochs=self.epochs, step=step, steps=steps, loss=float(loss),
                                    eta_s=eta, fraction=frac, phase=phase))


def _train_loop(cfg, model, batches: Callable[[int], Iterator[torch.Tensor]], steps_per_epoch: int,
                loss_fn: Callable[[torch.Tensor], torch.Tensor], device: torch.device, clock: _Clock,
                unit: float) -> list[float]:
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
            clock.tick(unit, epoch=epoch, step=step, steps=steps_per_epoch, loss=float(loss.detach()), phase="train")
        if not math.isfinite(total):
            raise UserError(f"training diverged (loss {total}) at epoch {epoch}; try a lower lr")
        history.append(total / max(count, 1))
        log.info("epoch %d/%d loss %.6f", epoch, cfg.epochs, history[-1])
    model.eval()
    return history


def _train_ae(cfg: AEConfig, paths: list[Path], device: torch.device, progress: Progress, roi) -> tuple:
    from engine.models import build_ae

    model = build_ae(cfg).to(device)
    loader = make_loader(paths, cfg, train=True)
    clock = _Clock(progress, cfg.epochs, cfg.epochs * len(loader))

    def batches(epoch: int) -> Iterator[torch.Tensor]:
        return (x for _, x in loader)

    history = _train_loop(cfg, model, batches, len(loader), model.loss, device, clock, 1.0)
    return model, history, {}


def _train_dfr(cfg: DFRConfig, paths: list[Path], run_dir: Path, device: torch.device, progress: Progress) -> tuple:
    """Feature pass (stats + cache) -> PCA latent width -> epochs over cached features."""
    from engine.feature_cache import FeatureCache, feature_pass
    from engine.models import build_dfr, build_features
    from engine.models.dfr import FeatureStats

    feats = build_features(cfg).to(device)
    n, c, m = len(paths), feats.out_channels, cfg.map_size
    cache = FeatureCache.create(run_dir / "feature_cache.npy", (n, c, m, m), cfg.feature_cache_gb)
    # Work units for the ETA: one image through the backbone = 1; a cached training image ~ 1 too.
    per_train = 1.0 if cache is not None else 2.0
    clock = _Clock(progress, cfg.epochs, n + cfg.epochs * n * per_train)
    stats = FeatureStats(c)
    try:
        feature_pass(feats, make_loader(paths, cfg, train=True, shuffle=False), device, stats, cache,
                     cfg.pca_samples_per_image, cfg.seed,
                     lambda step, steps: clock.tick(n / steps, epoch=0, step=step, steps=steps,
                                                    loss=float("nan"), phase="features"))
        pca_d = stats.latent_dim(cfg.pca_variance, standardised=cfg.feature_standardise)
        d = min(cfg.latent_dim or pca_d, c)
        clock.tick(0, epoch=0, step=1, steps=1, loss=float("nan"), phase="pca")
        log.info("DFR: %d channels, PCA %.0f%% -> d=%d, using d=%d", c, 100 * cfg.pca_variance, pca_d, d)
        model = build_dfr(cfg, feats, d).to(device)
        model.set_feature_stats(stats.mean.float(), stats.std.float())
        bs = cfg.batch_size
        steps = math.ceil(n / bs)
        if cache is not None:
            gen = torch.Generator().manual_seed(cfg.seed)

            def batches(epoch: int) -> Iterator[torch.Tensor]:
                perm = torch.randperm(n, generator=gen).numpy()
                return (cache.read(perm[i:i + bs]) for i in range(0, n, bs))
        else:
            loader = make_loader(paths, cfg, train=True)

            def batches(epoch: int) -> Iterator[torch.Tensor]:
                return (feats(x.to(device)) for _, x in loader)

        history = _train_loop(cfg, model, batches, steps, model.loss_on_features, device, clock, bs * per_train)
        if cfg.residual_norm:  # mean squared error per channel over the training features
            total = torch.zeros(c, dtype=torch.float64)
            with torch.no_grad():
                for x in batches(0):
                    err = model.channel_errors(x.to(device))  # (B, C, m, m)
                    total += err.double().mean(dim=(2, 3)).sum(dim=0).cpu()
            model.err_scale.copy_((total / n).clamp_min(1e-12).float())
    finally:
        if cache is not None:
            cache.delete()
    info = {"latent_dim": d, "pca_latent_dim": pca_d, "channels": c, "stage_channels": feats.channels,
            "weights_sha256": feats.weights_sha256, "weights_source": feats.weights_source,
            "norm_mean": feats.mean.flatten().tolist(), "norm_std": feats.std.flatten().tolist(),
            "feature_cache": cache is not None}
    return model, history, info


def train(config: AEConfig | DFRConfig, train_images: Sequence[Path], run_dir: Path,
          progress: Progress = None, roi: np.ndarray | None = None) -> TrainResult:
    """Train on OK images, write run_dir/checkpoint.pt, return what happened."""
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in train_images]
    if not paths:
        raise UserError("no OK training images: import OK images into the dataset's train split first")
    seed_everything(config.seed)
    device = resolve_device(config.device)
    if config.model == "ae":
        model, history, info = _train_ae(config, paths, device, progress, roi)
    else:
        model, history, info = _train_dfr(config, paths, run_dir, device, progress)
    if roi is not None:
        model.set_roi(torch.as_tensor(np.asarray(roi, dtype=bool)))
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
