"""Model-side helpers shared by the benchmarks: configs for timing, training with phase times,
bare forward throughput, and decoded input batches."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import CpuClock, load1, median, sync, timed_call
from bench.memory import MemoryProbe
from engine.config import PRESETS, AEConfig, DFRConfig, make_config

THESIS_PRESETS = ("ae-512", "dfr-128", "dfr-170")
ALL_PRESETS = ("ae", "dfr", *THESIS_PRESETS)


def weights_available(preset: str) -> tuple[bool, str]:
    """(True, source) when the preset's backbone has local pretrained weights (AE: none needed)."""
    cfg = PRESETS[preset].config
    if cfg.model == "ae":
        return True, "n/a"
    from engine.errors import UserError
    from engine.models.backbones import create_backbone

    try:
        return True, str(create_backbone(cfg.backbone, cfg.backbone_weights).weights_source)
    except UserError as exc:
        return False, str(exc)


def timing_config(preset: str, device: str, weights: str = "auto",
                  extra: dict[str, str] | None = None) -> tuple[AEConfig | DFRConfig, str]:
    """The preset on `device`; DFR backbones pretrained when available (weights="auto"), else random.

    Pretrained weights matter for timing only through the PCA latent width d of DFR's
    autoencoder (random features give a different d), so they are used where they exist.
    """
    base = PRESETS[preset].config
    over: dict[str, str] = {"device": device, "holdout_share": "0"}
    used = "n/a"
    if base.model == "dfr":
        if weights == "random" or (weights == "auto" and not weights_available(preset)[0]):
            over["backbone_weights"], used = "random", "random"
        else:
            used = "pretrained"
    import dataclasses

    known = {f.name for f in dataclasses.fields(base)}
    over.update({k: v for k, v in (extra or {}).items() if k in known})  # e.g. map_size only for DFR
    cfg = make_config(base.model, preset, over)
    if used == "random" and "latent_dim" not in over:
        cfg = dataclasses.replace(cfg, latent_dim=random_latent_dim(cfg))
    return cfg, used


RANDOM_LATENT_SHARE = 0.28  # d / C that PCA-90% gave with pretrained Lite0 on the magnetic-tile sample (131/464)


def random_latent_dim(cfg: DFRConfig) -> int:
    """A realistic latent width for timing a backbone with random weights.

    PCA of random-weight features is degenerate (B6 gave d = 4), which would make the
    autoencoder look free; use the share of channels that pretrained features needed instead.
    """
    from engine.models import build_features

    return max(1, round(RANDOM_LATENT_SHARE * build_features(cfg, weights="random").out_channels))


def load_batch(paths: list[Path], size: int, n: int) -> torch.Tensor:
    """(n, 3, S, S) float in [0, 1] from real image files by the image rule (cycled if few)."""
    from engine.intake.images import read_image, resize_image

    imgs = [resize_image(read_image(p), size) for p in paths[:n]]
    arr = np.stack([imgs[i % len(imgs)] for i in range(n)])  # (n, S, S, 3) uint8
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(255.0).contiguous()


class PhaseTimer:
    """Progress callback of `engine.training.train.train` recording when each phase / epoch ended."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.features_end: float | None = None
        self.epoch_end: dict[int, float] = {}

    def __call__(self, p: Any) -> None:
        now = time.perf_counter() - self.t0
        if p.phase == "features":
            self.features_end = now
        elif p.phase == "pca":
            self.features_end = now
        elif p.phase == "train":
            self.epoch_end[p.epoch] = now


def measure_training(cfg: AEConfig | DFRConfig, paths: list[Path], run_dir: Path, device: str,
                     epochs: int = 2) -> tuple[dict[str, Any], Any]:
    """Train `epochs` epochs; seconds per image of the last epoch (the first carries warm-up),
    of DFR's one-off feature pass, and the preset's amortised cost per image per epoch."""
    import dataclasses

    from engine.training.train import train

    run_cfg = dataclasses.replace(cfg, epochs=epochs)
    probe = MemoryProbe(device)
    probe.start()
    timer = PhaseTimer()
    with CpuClock() as clock:
        result = train(run_cfg, paths, run_dir, progress=timer)
    n = len(paths)
    ends = [timer.epoch_end[e] for e in sorted(timer.epoch_end)]
    last = ends[-1] - (ends[-2] if len(ends) > 1 else (timer.features_end or 0.0))
    out: dict[str, Any] = {"n_train": n, "epochs_run": epochs, "train_epoch_s_per_img": last / n,
                           "train_wall_s": clock.wall, "train_cpu_share": clock.share(torch.get_num_threads()),
                           "train_load1": clock.load, **{f"train_{k}": v for k, v in probe.peak().items()}}
    if cfg.model == "dfr":
        feat = timer.features_end or 0.0
        out["features_s_per_img"] = feat / n
        out["latent_dim"] = result.info.get("latent_dim")
        out["feature_cache"] = result.info.get("feature_cache")
        # what one epoch costs per image over a whole preset run (feature pass amortised)
        out["preset_s_per_img_per_epoch"] = (feat / n) / cfg.epochs + last / n
    else:
        out["preset_s_per_img_per_epoch"] = last / n
    out["preset_epochs"] = cfg.epochs
    return out, result


def _forward_fn(model: torch.nn.Module, x: torch.Tensor, batch: int, device: str, amp: bool,
                calls: int = 1) -> Any:
    from engine.evaluation.loading import model_input

    xb = model_input(x[:batch], torch.device(device))
    autocast = torch.autocast("cuda", enabled=amp and device.startswith("cuda"))

    def call() -> None:
        with torch.inference_mode(), autocast:
            for _ in range(calls):
                model(xb)

    return call


def forward_sweep(model: torch.nn.Module, x: torch.Tensor, batches: list[int], device: str, reps: int,
                  amp: bool = False) -> list[dict[str, float]]:
    """Images/s of the evaluation's forward at each batch size, measured round-robin.

    Round-robin (b1, b2, ..., b1, b2, ...) so that a change of the machine's load hits every
    batch size alike; each timed unit runs max(batches) images (e.g. 16 calls at batch 1), so
    short calls are not lost in timer noise. The input goes through
    `engine.evaluation.loading.model_input`, so with a model from `engine.evaluation.loading.prepare_model` this
    is exactly the evaluation's forward. `cpu_share` < ~0.8 means other processes took cores.
    """
    top = max(batches)
    fns = {b: _forward_fn(model, x, b, device, amp, calls=max(1, top // b)) for b in batches}
    imgs = {b: b * max(1, top // b) for b in batches}
    for fn in fns.values():
        fn()  # warm-up: allocator, oneDNN primitives for this shape
    walls: dict[int, list[float]] = {b: [] for b in batches}
    shares: dict[int, list[float]] = {b: [] for b in batches}
    loads = [load1()]
    threads = torch.get_num_threads()
    for _ in range(reps):
        for b, fn in fns.items():
            w, c = timed_call(fn, device)
            walls[b].append(w)
            shares[b].append(c / max(w * threads, 1e-9))
        loads.append(load1())
    rows = []
    for b in batches:
        t = median(walls[b])
        rows.append({"batch": b, "img_per_s": imgs[b] / t, "s_per_batch": t * b / imgs[b],
                     "spread": (max(walls[b]) - min(walls[b])) / t if t > 0 else 0.0,
                     "cpu_share": round(median(shares[b]), 2), "load1": max(loads)})
    return rows


def forward_throughput(model: torch.nn.Module, x: torch.Tensor, batch: int, device: str,
                       reps: int, amp: bool = False) -> dict[str, float]:
    """One batch size (see `forward_sweep`)."""
    return forward_sweep(model, x, [batch], device, reps, amp)[0]


def forward_peak(model: torch.nn.Module, x: torch.Tensor, batch: int, device: str,
                 amp: bool = False) -> dict[str, float]:
    """Peak memory of one forward at `batch` (above the level before it, and absolute)."""
    from engine.evaluation.loading import model_input

    xb = model_input(x[:batch], torch.device(device))
    sync(device)
    probe = MemoryProbe(device)
    probe.start()
    with torch.inference_mode(), torch.autocast("cuda", enabled=amp and device.startswith("cuda")):
        model(xb)
    return probe.peak()
