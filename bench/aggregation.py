"""DFR feature aggregation: ours (pool/resize each stage straight to the map) vs the thesis recipe
(upsample every stage to the input size, then average-pool), on the same images.

Measured twice: the aggregation alone, on the same stage outputs (what the choice changes),
and the whole feature extraction (backbone + aggregation, what a user waits for; with a big
backbone such as B6 the backbone dominates). Both extractors share one backbone (random
weights: they change neither time nor memory).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from bench.common import CpuClock, median, sync, timed_call
from bench.memory import MemoryProbe


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
    """Aggregation alone (on the same stage outputs) and whole extraction, interleaved."""
    cfg, backbone, x = _setup(preset, device, size, batch, overrides)
    ext = {a: _extractor(cfg, backbone, a, device) for a in ("ours", "thesis")}
    in_hw = (size, size)
    agg: dict[str, list[float]] = {a: [] for a in ext}
    full: dict[str, list[float]] = {a: [] for a in ext}

    with torch.inference_mode(), CpuClock() as clock:
        outs = ext["ours"].stage_outputs(x)
        for a, f in ext.items():  # warm-up
            f(x)
            f.aggregate(outs, in_hw)
        for _ in range(reps):
            for a, f in ext.items():
                agg[a].append(timed_call(lambda: f.aggregate(outs, in_hw), device)[0])
                full[a].append(timed_call(lambda: f(x), device)[0])
    ours, thesis = median(agg["ours"]), median(agg["thesis"])
    ours_f, thesis_f = median(full["ours"]), median(full["thesis"])
    return {"preset": preset, "backbone": cfg.backbone, "size": size, "map_size": cfg.map_size, "batch": batch,
            "channels": ext["ours"].out_channels, "ours_s": ours, "thesis_s": thesis,
            "speedup": thesis / ours if ours > 0 else None, "ours_full_s": ours_f, "thesis_full_s": thesis_f,
            "full_speedup": thesis_f / ours_f if ours_f > 0 else None, "times": agg, "full_times": full,
            "load1": clock.load, "cpu_share": clock.share(torch.get_num_threads())}


def peak_one(preset: str, aggregation: str, device: str, size: int, batch: int,
             overrides: dict[str, str] | None, mode: str = "aggregation") -> dict[str, Any]:
    """Peak memory in a fresh process, above the level before the measured step:
    mode "aggregation": the stage outputs are computed first, then only the aggregation is
    measured; mode "full": one whole extraction (backbone + aggregation)."""
    cfg, backbone, x = _setup(preset, device, size, batch, overrides)
    f = _extractor(cfg, backbone, aggregation, device)
    with torch.inference_mode():
        outs = f.stage_outputs(x) if mode == "aggregation" else None
        probe = MemoryProbe(device)
        probe.start()
        t = time.perf_counter()
        if outs is not None:
            f.aggregate(outs, (size, size))
        else:
            f(x)
        sync(device)
    return {"aggregation": aggregation, "mode": mode, "seconds": time.perf_counter() - t, **probe.peak()}


def finish_row(row: dict[str, Any]) -> dict[str, Any]:
    """Merge the memory measurements into the timing row; ratios thesis/ours."""
    for mode, suffix in (("aggregation", "mb"), ("full", "full_mb")):
        for a in ("ours", "thesis"):
            mem = row.pop(f"mem_{mode}_{a}", {}) or {}
            row[f"{a}_{suffix}"] = mem.get("delta_mb")
            if "error" in mem:
                row[f"{a}_{mode}_mem_error"] = mem["error"]
        o, t = row.get(f"ours_{suffix}"), row.get(f"thesis_{suffix}")
        row["mem_ratio" if mode == "aggregation" else "full_mem_ratio"] = t / o if o and t is not None else None
    return row
