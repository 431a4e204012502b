"""How training and evaluation scale with the number of images.

    .venv/bin/python -m bench.scale [--sizes 100 400 1600] [--models dfr ae] [--quick] [--json PATH]

For each model family (its CPU preset, at 256²) and each size N: one epoch of training on N
generated OK images, and one evaluation of N generated test images (half OK, half NOK with
masks, half of them JPEG), each in a fresh subprocess: seconds per image and peak memory
(process RSS; also its anonymous part, i.e. without memory-mapped files such as DFR's feature
cache). Targets: peak at 1,600 training images <= 1.2x that at 100; time per image flat.

Also the pixel metrics alone (both passes of `engine.evaluation.evaluate`: range scan, then stored
float16 maps + masks into the binned accumulator, AUROC + AUPRO) over N maps of 256², target
< 5 s for 400. Images are generated once (one set of the largest N; smaller N use its first
images) and cached; generation is not timed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import CpuClock, add_run_options, machine, run_isolated, table, write_json
from bench.memory import MemoryProbe


def _root(size: int, n_max: int) -> Path:
    from bench.data import demo_set

    return demo_set(size, n_max, n_max // 2, n_max - n_max // 2)


def _cfg(model: str, size: int, overrides: dict[str, str] | None, epochs: int = 1):
    from bench.models import timing_config

    over = {"epochs": str(epochs), "input_size": str(size), **(overrides or {})}
    return timing_config(model, "cpu", "auto", over)


def scale_train(model: str, n: int, n_max: int, size: int, run_dir: str,
                overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """One epoch on the first n training images (own process)."""
    import torch

    from bench.data import train_paths
    from bench.models import PhaseTimer
    from engine.training.train import train

    cfg, used = _cfg(model, size, overrides)
    paths = train_paths(_root(size, n_max), n)
    probe = MemoryProbe("cpu")
    probe.start()
    timer = PhaseTimer()
    with CpuClock() as clock:
        res = train(cfg, paths, Path(run_dir), progress=timer)
    mem = probe.peak()
    out = {"model": model, "n": n, "phase": "train", "weights": used, "s_per_img": clock.wall / n,
           "wall_s": clock.wall, "cpu_share": clock.share(torch.get_num_threads()), "load1": clock.load,
           **mem, "checkpoint": str(res.checkpoint)}
    if model == "dfr":
        feat = timer.features_end or 0.0
        out.update(features_s_per_img=feat / n, epoch_s_per_img=(clock.wall - feat) / n,
                   feature_cache=res.info.get("feature_cache"), latent_dim=res.info.get("latent_dim"))
    return out


def scale_eval(model: str, n: int, n_max: int, size: int, checkpoint: str) -> dict[str, Any]:
    """One evaluation of n test images (own process)."""
    import torch

    from bench.data import eval_items
    from engine.evaluation.evaluate import evaluate_run

    items = eval_items(_root(size, n_max), n // 2, n - n // 2)
    marks: dict[str, float] = {}
    t0 = time.perf_counter()

    def progress(frac: float, msg: str) -> None:
        if msg == "pixel metrics":
            marks["stream_end"] = time.perf_counter() - t0

    probe = MemoryProbe("cpu")
    probe.start()
    with tempfile.TemporaryDirectory(prefix="bench-scale-eval-") as tmp, CpuClock() as clock:
        res = evaluate_run(Path(checkpoint), items, Path(tmp), device="cpu", progress=progress)
    mem = probe.peak()
    post = clock.wall - marks.get("stream_end", clock.wall)
    return {"model": model, "n": len(items), "phase": "eval", "s_per_img": clock.wall / len(items),
            "wall_s": clock.wall, "post_s": post, "cpu_share": clock.share(torch.get_num_threads()),
            "load1": clock.load, **mem, "failed": len(res.failed), "image_auroc": res.metrics.get("image_auroc")}


def scale_pixel(n: int, n_max: int, size: int, reps: int = 3) -> dict[str, Any]:
    """Both pixel-metric passes of `engine.evaluation.evaluate` over n stored maps with their masks (own process).

    Maps: smooth noise, raised where the mask is (a plausible detector), float16 on disk as the
    evaluation stores them. Pass 1 (range scan, done while maps are produced) and pass 2 (load
    + bin + count + AUROC/AUPRO) are timed separately; medians of `reps`.
    """
    import cv2
    import numpy as np

    from bench.common import median
    from bench.data import eval_items
    from engine.evaluation.evaluate import _heatmap_rel, _pixel_metrics, _Scanned
    from engine.evaluation.heatmaps import save_heatmap
    from engine.intake.images import read_mask, resize_mask

    items = eval_items(_root(size, n_max), n // 2, n - n // 2, jpeg_share=0)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench-pixel-") as tmp:
        out_dir = Path(tmp)
        (out_dir / "heatmaps").mkdir()
        maps, masks = [], {}
        for i, it in enumerate(items):
            amap = cv2.GaussianBlur(rng.random((size, size), dtype=np.float32), (0, 0), 3)
            if it.mask_path is not None:
                m = resize_mask(read_mask(it.mask_path), size)
                masks[i] = (np.packbits(m), m.shape)
                amap = amap + 0.3 * cv2.GaussianBlur(m.astype(np.float32), (0, 0), 2)
            amap = amap.astype(np.float16)
            save_heatmap(out_dir / _heatmap_rel(it), amap)
            maps.append(amap)
        scan_t, acc_t, result = [], [], None
        for _ in range(reps):
            scanned = _Scanned(None)
            t = time.perf_counter()
            for i, amap in enumerate(maps):
                scanned.scores[i] = 0.0
                scanned.scan.update(amap)
            scan_t.append(time.perf_counter() - t)
            scanned.masks = masks
            t = time.perf_counter()
            result = _pixel_metrics(items, scanned, None, out_dir)
            acc_t.append(time.perf_counter() - t)
    total = [a + b for a, b in zip(scan_t, acc_t)]
    return {"n": n, "size": size, "scan_s": median(scan_t), "accumulate_s": median(acc_t), "total_s": median(total),
            "pixel_auroc": result.pixel_auroc, "aupro": result.aupro, "n_regions": result.n_regions}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", type=int, default=None, help="numbers of images (default 100 400 1600)")
    p.add_argument("--models", nargs="+", default=["dfr", "ae"], choices=("dfr", "ae"))
    p.add_argument("--image-size", type=int, default=None, help="side of the generated images and the input (256)")
    p.add_argument("--quick", action="store_true", help="sizes 8 16 32 at 64², tiny DFR map: a smoke run")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field of both presets (e.g. num_workers=0)")
    p.add_argument("--no-pixel", action="store_true", help="skip the pixel-metrics measurement")
    add_run_options(p)
    p.add_argument("--json", type=Path, default=None, help="write results here (default bench/results/scale.json)")
    args = p.parse_args(argv)
    from bench.common import QUIET, apply_run_options

    apply_run_options(args)
    from engine.config import parse_overrides

    overrides = parse_overrides(args.set)
    if args.quick:
        args.sizes, args.image_size = args.sizes or [8, 16, 32], args.image_size or 64
        overrides = {"map_size": "16", "num_workers": "0", "pca_samples_per_image": "64", **overrides}
    args.sizes, args.image_size = args.sizes or [100, 400, 1600], args.image_size or 256
    sizes = sorted(args.sizes)
    n_max, size = sizes[-1], args.image_size
    print(f"[scale] generating {n_max} train + {n_max} test images at {size}² (cached) ...", file=sys.stderr, flush=True)
    _root(size, n_max)
    report: dict[str, Any] = {"benchmark": "scale", "machine": machine(), "args": vars(args) | {"json": str(args.json)},
                              "rows": [], "pixel": []}
    for model in args.models:
        for n in sizes:
            print(f"[scale] {model} n={n} ...", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
                tr = run_isolated("bench.scale:scale_train", {"model": model, "n": n, "n_max": n_max, "size": size,
                                                               "run_dir": tmp, "overrides": overrides})
                report["rows"].append(tr | {"model": model, "n": n, "phase": "train"})
                if "error" in tr:
                    continue
                ev = run_isolated("bench.scale:scale_eval", {"model": model, "n": n, "n_max": n_max, "size": size,
                                                              "checkpoint": tr["checkpoint"]})
                report["rows"].append(ev | {"model": model, "n": n, "phase": "eval"})
    if not args.no_pixel:
        for n in sizes:
            print(f"[scale] pixel metrics n={n} ...", file=sys.stderr, flush=True)
            report["pixel"].append(run_isolated("bench.scale:scale_pixel", {"n": n, "n_max": n_max, "size": size}))
    report["targets"] = targets(report)
    from bench.common import load1

    report["machine"]["load1_end"] = load1()
    report["quiet_log"] = QUIET["log"]
    path = write_json(args.json, report, "scale.json")
    print(render(report))
    print(f"\nJSON: {path}")
    return 0 if not any("error" in r for r in report["rows"] + report["pixel"]) else 1


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """Peak ratio largest/smallest N and time-per-image ratio, per model and phase; pixel metrics at 400."""
    out: dict[str, Any] = {}
    for model in report["args"]["models"]:
        for phase in ("train", "eval"):
            rows = sorted((r for r in report["rows"] if r["model"] == model and r["phase"] == phase
                           and "error" not in r), key=lambda r: r["n"])
            if len(rows) < 2:
                continue
            lo, hi = rows[0], rows[-1]
            out[f"{model}_{phase}"] = {
                "n": [lo["n"], hi["n"]], "peak_ratio": hi["peak_mb"] / lo["peak_mb"],
                "anon_peak_ratio": (hi.get("anon_peak_mb") or 0) / max(lo.get("anon_peak_mb") or 1e-9, 1e-9),
                "time_per_img_ratio": hi["s_per_img"] / lo["s_per_img"],
                "peak_met": hi["peak_mb"] <= 1.2 * lo["peak_mb"]}
    px = [r for r in report["pixel"] if r.get("n") == 400 and "error" not in r]
    if px:
        out["pixel_400"] = {"total_s": px[0]["total_s"], "met": px[0]["total_s"] < 5.0}
    return out


ROW_COLS = [("model", "model"), ("phase", "phase"), ("n", "images"), ("s_per_img", "s/img"), ("wall_s", "wall s"),
            ("features_s_per_img", "DFR features s/img"), ("epoch_s_per_img", "DFR epoch s/img"),
            ("feature_cache", "feature cache"), ("peak_mb", "peak RSS MB"), ("delta_mb", "peak - start MB"),
            ("anon_peak_mb", "peak anon MB"), ("file_peak_mb", "peak file-backed MB"),
            ("cpu_share", "cpu share"), ("load1", "load1")]
PIXEL_COLS = [("n", "maps"), ("size", "side"), ("scan_s", "pass 1 scan s"), ("accumulate_s", "pass 2 load+bin+AUROC+AUPRO s"),
              ("total_s", "total s"), ("pixel_auroc", "pixel AUROC"), ("aupro", "AUPRO")]


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    out = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM, torch {m['torch']}; "
           f"load1 {m['load1_start']} -> {m.get('load1_end')}", "",
           table([r if "error" not in r else {**r, "phase": r["phase"] + " ERROR"} for r in report["rows"]],
                 ROW_COLS)]
    if report["pixel"]:
        out += ["", "Pixel metrics (AUROC + AUPRO), both passes:", table(report["pixel"], PIXEL_COLS)]
    if report.get("targets"):
        rows = [{"what": k, **{kk: vv for kk, vv in v.items()}} for k, v in report["targets"].items()]
        out += ["", "Targets:", table(rows, [("what", "what"), ("n", "sizes"), ("peak_ratio", "peak ratio"),
                                             ("anon_peak_ratio", "anon peak ratio"),
                                             ("time_per_img_ratio", "s/img ratio"), ("peak_met", "peak <= 1.2x"),
                                             ("total_s", "pixel s"), ("met", "pixel < 5 s")])]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
