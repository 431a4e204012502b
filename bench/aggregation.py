"""DFR feature aggregation: ours (pool/resize each stage straight to the map) vs the thesis recipe
(upsample every stage to the input size, then average-pool), on the same images.

Both extractors share one backbone (random weights: they change neither time nor memory).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from bench.common import CpuClock, MemoryProbe, median, sync


def _setup(preset: str, device: str, size: int, batch: int, overrides: dict[str, str] | None
           ) -> tuple[Any, Any, torch.Tensor]:
    from bench.data import demo_set, eval_items
    from bench.models import load_batch
    from engine.config import make_config
    from engine.models.backbones import create_backbone

    cfg = make_config("dfr", preset, {**(overrides or {}), "backbone_weights": "random", "input_size": str(size)})
    backbone = create_backbone(cfg.backbone, "random").to(device)
    root = demo_set(size, 1, max(2, batch), 2)
    x = load_batch([it.path for it in eval_items(root)], size, batch).to(device)
    return cfg, backbone, x


def _extractor(cfg: Any, backbone: Any, aggregation: str, device: str) -> torch.nn.Module:
    from engine.models.dfr import StageFeatures

    return StageFeatures(backbone, cfg.stages, cfg.map_size, aggregation, cfg.local_avg).to(device).eval()


def time_both(preset: str, device: str, size: int, batch: int, reps: int,
              overrides: dict[str, str] | None) -> dict[str, Any]:
    cfg, backbone, x = _setup(preset, device, size, batch, overrides)
    ext = {a: _extractor(cfg, backbone, a, device) for a in ("ours", "thesis")}
    times: dict[str, list[float]] = {a: [] for a in ext}
    with torch.inference_mode(), CpuClock() as clock:
        for f in ext.values():
            f(x)  # warm-up
        for _ in range(reps):
            for a, f in ext.items():
                sync(device)
                t = time.perf_counter()
                f(x)
                sync(device)
                times[a].append(time.perf_counter() - t)
    ours, thesis = median(times["ours"]), median(times["thesis"])
    return {"preset": preset, "backbone": cfg.backbone, "size": size, "map_size": cfg.map_size, "batch": batch,
            "channels": ext["ours"].out_channels, "ours_s": ours, "thesis_s": thesis,
            "speedup": thesis / ours if ours > 0 else None, "times": times, "load1": clock.load,
            "cpu_share": clock.share(torch.get_num_threads())}


def peak_one(preset: str, aggregation: str, device: str, size: int, batch: int,
             overrides: dict[str, str] | None) -> dict[str, Any]:
    """First forward in a fresh process: peak above the level with the model and input loaded."""
    cfg, backbone, x = _setup(preset, device, size, batch, overrides)
    f = _extractor(cfg, backbone, aggregation, device)
    probe = MemoryProbe(device)
    probe.start()
    t = time.perf_counter()
    with torch.inference_mode():
        f(x)
    sync(device)
    return {"aggregation": aggregation, "seconds": time.perf_counter() - t, **probe.peak()}


def finish_row(row: dict[str, Any]) -> dict[str, Any]:
    """Merge the two memory measurements into the timing row; ratios thesis/ours."""
    for a in ("ours", "thesis"):
        mem = row.pop(f"mem_{a}", {}) or {}
        row[f"{a}_mb"] = mem.get("delta_mb")
        row[f"{a}_peak_abs_mb"] = mem.get("peak_mb")
        if "error" in mem:
            row[f"{a}_mem_error"] = mem["error"]
    o, t = row.get("ours_mb"), row.get("thesis_mb")
    row["mem_ratio"] = t / o if o and t is not None else None
    return row
