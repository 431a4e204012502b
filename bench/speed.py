"""Speed and memory of each preset, side by side.

    .venv/bin/python -m bench.speed [--device cpu|cuda] [--presets ae dfr ae-512 dfr-128 dfr-170]
                                    [--quick] [--compile] [--json PATH]

Per preset, in a fresh subprocess (peaks never mix): training seconds per image per epoch
(DFR: its one-off backbone feature pass separately, and amortised over the preset's epochs),
bare-model inference images/s at batch 1 and at the best batch size, peak memory (process RSS
on CPU, `max_memory_allocated` on CUDA) of training and of inference, and the end-to-end
evaluation (`engine.evaluation.evaluate.evaluate_run`: decode PNG/JPEG from disk -> preprocess -> model ->
float16 heatmaps written -> pixel + image metrics) against the bare forward at the same batch
size (the preset's), as a ratio. Channels-last (and with --compile, torch.compile) forward at
the best batch size are measured beside the plain NCHW layout, to show which lever pays
(the evaluation runs channels-last: `engine.evaluation.loading.prepare_model`; the bare forward is that).

DFR aggregation: ours (pool/resize each stage straight to the map) against the thesis recipe
(upsample every stage to the input size, then average-pool) on the same images at 512² input:
time interleaved in one process, peak memory each in its own fresh process; ratios.

DFR backbones use pretrained weights where they are available locally (they fix the PCA
latent width d, which sets the autoencoder's cost), random ones otherwise (`--weights`); with
random weights d is set to 0.28 x channels (what PCA gave with pretrained Lite0 on the
magnetic-tile sample; PCA of random features is degenerate).
Images are synthetic demo parts, generated once and cached (`$PREFILTER_QA_BENCH_DATA`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import EXACT_RSS_ENV, add_run_options, machine, run_isolated, table, write_json

QUICK = {"n_train": 8, "n_eval": 8, "batches": [1, 4], "reps": 2, "e2e_runs": 1}
FULL_256 = {"n_train": 32, "n_eval": 64, "batches": [1, 2, 4, 8, 16], "reps": 5, "e2e_runs": 3}
FULL_512 = {"n_train": 16, "n_eval": 16, "batches": [1, 2, 4, 8], "reps": 3, "e2e_runs": 3}


def _plan(size: int, quick: bool, batch_size: int) -> dict[str, Any]:
    plan = dict(QUICK if quick else (FULL_256 if size <= 256 else FULL_512))
    plan["batches"] = sorted(set(plan["batches"]) | {batch_size})
    plan["n_eval"] = max(plan["n_eval"], 2 * batch_size)
    return plan


def speed_train(preset: str, run_dir: str, device: str = "cpu", quick: bool = False, weights: str = "auto",
                overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """Training figures of one preset (its own process); leaves run_dir/checkpoint.pt behind."""
    import torch

    from bench.data import demo_set, train_paths
    from bench.models import measure_training, timing_config

    cfg, used = timing_config(preset, device, weights, overrides)
    plan = _plan(cfg.input_size, quick, cfg.batch_size)
    root = demo_set(cfg.input_size, plan["n_train"], plan["n_eval"] // 2, plan["n_eval"] - plan["n_eval"] // 2)
    out: dict[str, Any] = {"preset": preset, "model": cfg.model, "input_size": cfg.input_size, "weights": used,
                           "device": device, "threads": torch.get_num_threads(), "batch_size": cfg.batch_size}
    if cfg.model == "dfr":
        out.update(backbone=cfg.backbone, map_size=cfg.map_size)
    train_out, result = measure_training(cfg, train_paths(root), Path(run_dir), device)
    out.update(train_out)
    out["checkpoint"] = str(result.checkpoint)
    return out


def speed_infer(preset: str, checkpoint: str, device: str = "cpu", quick: bool = False, compile: bool = False
                ) -> dict[str, Any]:
    """Inference figures of a trained checkpoint (its own process, so its peak is inference only)."""
    from bench.data import demo_set, eval_items
    from bench.e2e import measure_e2e
    from bench.memory import peak_rss_mb, rss_mb
    from bench.models import forward_peak, forward_sweep, load_batch
    from bench.variants import variant_rows
    from engine.evaluation.loading import prepare_model
    from engine.models.checkpoint import load_model

    base_mb = rss_mb()
    model, cfg = load_model(Path(checkpoint), device=device)
    model = prepare_model(model)  # the evaluation's model: the bare forward is its forward
    size = cfg.input_size
    plan = _plan(size, quick, cfg.batch_size)
    root = demo_set(size, plan["n_train"], plan["n_eval"] // 2, plan["n_eval"] - plan["n_eval"] // 2)
    amp = bool(cfg.amp) and device.startswith("cuda")
    items = eval_items(root)
    x = load_batch([it.path for it in items], size, max(plan["batches"]))
    out: dict[str, Any] = {"rss_before_model_mb": base_mb, "rss_model_loaded_mb": rss_mb()}
    # memory first, while nothing else has run in this process: batch 1, then the largest batch
    out["infer_b1_mem"] = forward_peak(model, x, 1, device, amp)
    out["infer_max_batch"] = max(plan["batches"])
    out["infer_maxbs_mem"] = forward_peak(model, x, max(plan["batches"]), device, amp)
    rows = forward_sweep(model, x, plan["batches"], device, plan["reps"], amp)
    best = max(rows, key=lambda r: r["img_per_s"])
    out["forward"] = rows
    out["infer_b1_img_s"] = rows[0]["img_per_s"]
    out["infer_best_img_s"], out["best_batch"] = best["img_per_s"], best["batch"]
    out["variants"] = variant_rows(model, x, best["batch"], device, plan["reps"], amp, compile)
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        out["e2e"] = measure_e2e(model, Path(checkpoint), items, Path(tmp), device, cfg.batch_size, x,
                                 plan["reps"], plan["e2e_runs"], amp)
    out["process_peak_mb"] = peak_rss_mb()
    return out


def speed_preset(preset: str, device: str = "cpu", quick: bool = False, weights: str = "auto",
                 compile: bool = False, overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """Training in one fresh process, inference of its checkpoint in another."""
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
        res = run_isolated("bench.speed:speed_train", {"preset": preset, "run_dir": tmp, "device": device,
                                                        "quick": quick, "weights": weights, "overrides": overrides})
        if "error" in res:
            return res | {"preset": preset}
        inf = run_isolated("bench.speed:speed_infer", {"preset": preset, "checkpoint": res["checkpoint"],
                                                        "device": device, "quick": quick, "compile": compile})
        if "error" in inf:
            return res | {"error": inf["error"]}
        return res | inf


def aggregation_time(preset: str, device: str = "cpu", size: int = 512, batch: int = 1, reps: int = 3,
                     overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """Feature extraction time, ours vs thesis, interleaved on the same images (one process)."""
    from bench.aggregation import time_both

    return time_both(preset, device, size, batch, reps, overrides)


def aggregation_memory(preset: str, aggregation: str, device: str = "cpu", size: int = 512, batch: int = 1,
                       overrides: dict[str, str] | None = None, mode: str = "aggregation") -> dict[str, Any]:
    """Peak memory of the aggregation alone / of a whole extraction with `aggregation` (own process)."""
    from bench.aggregation import peak_one

    return peak_one(preset, aggregation, device, size, batch, overrides, mode)


# ---------------------------------------------------------------- report

def _mem(d: dict | None) -> float | None:
    return None if not d else d.get("peak_mb")


def summary_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        if "error" in r:
            rows.append({"preset": r.get("preset"), "note": r["error"].splitlines()[-1][:80]})
            continue
        e2e = r.get("e2e") or {}
        rows.append({
            "preset": r["preset"], "size": r["input_size"], "weights": r["weights"], "d": r.get("latent_dim"),
            "b1": r["infer_b1_img_s"], "best": r["infer_best_img_s"], "best_bs": r["best_batch"],
            "train": r["preset_s_per_img_per_epoch"], "epoch": r["train_epoch_s_per_img"],
            "feat": r.get("features_s_per_img"), "mem_train": r.get("train_peak_mb"),
            "mem_infer": _mem(r.get("infer_maxbs_mem")), "mem_b1": _mem(r.get("infer_b1_mem")),
            "max_bs": r.get("infer_max_batch"),
            "e2e_bs": e2e.get("batch"), "e2e": e2e.get("img_per_s"), "bare": e2e.get("bare_img_per_s"),
            "ratio": e2e.get("ratio"), "load": max(r.get("train_load1", 0), e2e.get("load1", 0)),
        })
    return rows


SUMMARY_COLS = [("preset", "preset"), ("size", "input"), ("weights", "weights"), ("d", "DFR d"),
                ("b1", "infer img/s b1"), ("best", "infer img/s best"), ("best_bs", "best bs"),
                ("train", "train s/img/epoch (preset)"), ("epoch", "CAE/AE epoch s/img"),
                ("feat", "DFR feature pass s/img"), ("mem_train", "peak MB train"),
                ("mem_b1", "peak MB infer b1"), ("mem_infer", "peak MB infer max bs"), ("max_bs", "max bs"),
                ("e2e_bs", "e2e bs"), ("e2e", "e2e img/s"), ("bare", "bare img/s same bs"),
                ("ratio", "e2e/bare"), ("load", "load1 max")]


def variant_table(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        for v in r.get("variants", []):
            rows.append({"preset": r["preset"], **v})
    return rows


VARIANT_COLS = [("preset", "preset"), ("variant", "forward variant"), ("batch", "bs"),
                ("img_per_s", "img/s"), ("vs_eager", "vs nchw"), ("setup_s", "setup s"), ("note", "note")]
AGG_COLS = [("preset", "preset"), ("backbone", "backbone"), ("size", "input"), ("map_size", "map"),
            ("batch", "bs"), ("ours_s", "agg ours s"), ("thesis_s", "agg thesis s"),
            ("speedup", "agg thesis/ours time"), ("ours_mb", "agg ours +MB"), ("thesis_mb", "agg thesis +MB"),
            ("mem_ratio", "agg thesis/ours mem"), ("ours_full_s", "extract ours s"),
            ("thesis_full_s", "extract thesis s"), ("full_speedup", "extract thesis/ours time"),
            ("ours_full_mb", "extract ours +MB"), ("thesis_full_mb", "extract thesis +MB"),
            ("full_mem_ratio", "extract thesis/ours mem"), ("load1", "load1")]
E2E_COLS = [("preset", "preset"), ("batch", "bs"), ("n", "images"), ("img_per_s", "e2e img/s"),
            ("bare_img_per_s", "bare img/s"), ("ratio", "ratio"), ("stream_s", "decode+model+write s"),
            ("post_s", "pixel+image metrics s"), ("load_s", "load model s"), ("load1", "load1")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--presets", nargs="+", default=["ae", "dfr", "ae-512", "dfr-128", "dfr-170"])
    p.add_argument("--quick", action="store_true", help="few images and batch sizes: a smoke run")
    p.add_argument("--weights", default="auto", choices=("auto", "random"),
                   help="DFR backbones: pretrained where available (auto) or always random")
    p.add_argument("--compile", action="store_true", help="also time a torch.compile'd forward")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field of every preset (e.g. input_size=64)")
    p.add_argument("--agg-size", type=int, default=512, help="input side for the aggregation comparison")
    p.add_argument("--agg-batch", type=int, default=1, help="batch for the aggregation comparison")
    p.add_argument("--no-aggregation", action="store_true")
    add_run_options(p)
    p.add_argument("--json", type=Path, default=None, help="write results here (default bench/results/speed.json)")
    args = p.parse_args(argv)
    from bench.common import QUIET, apply_run_options

    apply_run_options(args)
    from engine.config import PRESETS, parse_overrides

    overrides = parse_overrides(args.set)
    bad = [x for x in args.presets if x not in PRESETS]
    if bad:
        p.error(f"unknown preset(s) {bad}; choose from {list(PRESETS)}")
    report: dict[str, Any] = {"benchmark": "speed", "machine": machine(), "args": vars(args) | {"json": str(args.json)},
                              "presets": [], "aggregation": []}
    for preset in args.presets:
        print(f"[speed] {preset} ...", file=sys.stderr, flush=True)
        res = speed_preset(preset, args.device, args.quick, args.weights, args.compile, overrides)
        report["presets"].append(res)
    dfr_presets = [x for x in args.presets if PRESETS[x].model == "dfr"]
    if not args.no_aggregation:
        agg_over = {k: v for k, v in overrides.items() if k != "input_size"}
        for preset in dfr_presets:
            print(f"[speed] aggregation {preset} ...", file=sys.stderr, flush=True)
            kw = {"preset": preset, "device": args.device, "size": args.agg_size, "batch": args.agg_batch,
                  "overrides": agg_over}
            row = run_isolated("bench.speed:aggregation_time", kw | {"reps": 2 if args.quick else 5})
            for mode in ("aggregation", "full"):
                for agg in ("ours", "thesis"):
                    row[f"mem_{mode}_{agg}"] = run_isolated("bench.speed:aggregation_memory",
                                                            kw | {"aggregation": agg, "mode": mode},
                                                            env_extra=EXACT_RSS_ENV)
            from bench.aggregation import finish_row

            report["aggregation"].append(finish_row(row))
    from bench.common import load1

    report["machine"]["load1_end"] = load1()
    report["quiet_log"] = QUIET["log"]
    path = write_json(args.json, report, "speed.json")
    print(render(report))
    print(f"\nJSON: {path}")
    return 0 if not any("error" in r for r in report["presets"]) else 1


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    out = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM, torch {m['torch']} "
           f"({m['torch_threads']} threads), device {report['args']['device']}; load1 {m['load1_start']} -> "
           f"{m.get('load1_end')}", "", table(summary_rows(report["presets"]), SUMMARY_COLS)]
    e2e = [{"preset": r["preset"], **r["e2e"]} for r in report["presets"] if r.get("e2e")]
    if e2e:
        out += ["", "End-to-end evaluation vs bare forward (same batch size):", table(e2e, E2E_COLS)]
    var = variant_table(report["presets"])
    if var:
        out += ["", "Forward variants at the best batch size:", table(var, VARIANT_COLS)]
    if report["aggregation"]:
        out += ["", "DFR aggregation, ours vs thesis: the aggregation alone on the same stage outputs, and the "
                "whole feature extraction (backbone + aggregation); memory = peak RSS above the level before, "
                "fresh process each, freed blocks >= 64 KiB returned to the OS (EXACT_RSS_ENV):",
                table(report["aggregation"], AGG_COLS)]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
