"""End-to-end evaluation throughput against the bare model forward at the same batch size."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from bench.common import CpuClock, median
from bench.models import forward_throughput
from engine.evaluation.evaluate import EvalItem


def measure_e2e(model: torch.nn.Module, checkpoint: Path, items: list[EvalItem], out_root: Path, device: str,
                batch: int, x: torch.Tensor, reps: int, runs: int, amp: bool) -> dict[str, Any]:
    """`evaluate_run` (decode -> preprocess -> model -> float16 heatmaps written -> pixel and image
    metrics, model loading included) `runs` times, each between two bare forwards at the same
    batch size on already decoded tensors (the evaluation's model and input layout).

    The ratio is taken per run against the mean of the bare forwards just before and after it
    (paired, so a change of the machine's load between runs cancels out); median over runs.
    """
    from engine.evaluation.evaluate import evaluate_run
    from engine.models.checkpoint import load_model

    t = time.perf_counter()
    load_model(checkpoint, device=device)
    load_s = time.perf_counter() - t
    threads = torch.get_num_threads()
    bare = [forward_throughput(model, x, batch, device, reps, amp)]
    e2e, ratios, stream, post, loads, cores = [], [], [], [], [], []
    res = None
    for k in range(runs):
        marks: dict[str, float] = {}
        t0 = time.perf_counter()

        def progress(frac: float, msg: str) -> None:
            if msg == "pixel metrics":
                marks["stream_end"] = time.perf_counter() - t0

        with CpuClock() as clock:
            res = evaluate_run(checkpoint, items, out_root / f"run{k}", device=device, batch_size=batch,
                               progress=progress)
        bare.append(forward_throughput(model, x, batch, device, reps, amp))
        e2e.append(len(items) / clock.wall)
        ratios.append(e2e[-1] / ((bare[-2]["img_per_s"] + bare[-1]["img_per_s"]) / 2))
        stream.append(marks.get("stream_end", clock.wall))
        post.append(clock.wall - marks.get("stream_end", clock.wall))
        loads.append(clock.load)
        cores.append(clock.cpu / max(clock.wall, 1e-9))
    m = res.metrics if res is not None else {}
    bare_img_s = [b["img_per_s"] for b in bare]
    return {"batch": batch, "n": len(items), "img_per_s": median(e2e),
            "bare_img_per_s": median(bare_img_s), "ratio": median(ratios),
            "ratios": ratios, "runs_img_per_s": e2e, "bare_runs_img_per_s": bare_img_s,
            "bare_cpu_share": [b["cpu_share"] for b in bare], "stream_s": median(stream), "post_s": median(post),
            "load_s": load_s, "cpu_cores_used": round(median(cores), 2),
            "cpu_share": round(median(cores) / max(threads, 1), 2), "load1": max(loads) if loads else None,
            "failed": len(res.failed) if res is not None else None,
            "image_auroc": m.get("image_auroc"), "pixel_auroc": m.get("pixel_auroc"), "aupro": m.get("aupro")}
