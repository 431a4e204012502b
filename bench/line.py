"""The line scorer (onnxruntime / OpenVINO float32, no torch) against torch `predict`, batch 1.

    .venv/bin/python -m bench.line [--presets ae dfr] [--images 40] [--threads 1] [--json PATH]

Per preset: a checkpoint of the preset's architecture (random weights: speed does not depend on
them) is released as a real bundle (engine.release.bundle.write_bundle, golden images and parity
check included). Then, each in a fresh process: images per second and ms per image at batch 1
over the same demo images (decode by the image rule + model; no heatmaps), and the whole process
from start to the first verdict with its peak RSS (`/usr/bin/time`). Targets: the line scorer
>= 1.3x torch's throughput, < 2 s to the first verdict, < 300 MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import REPO, load1, machine, table, write_json

TORCH_STEADY = """
import json, sys, time, torch
torch.set_num_threads({threads})
from engine.evaluation.predict import predict_images
paths = {paths!r}
t0 = time.perf_counter()
predict_images({ckpt!r}, paths[:1], {out!r}, image_threshold=0.0, device="cpu", batch_size=1, num_workers=0,
               heatmaps=False)
t1 = time.perf_counter()
res = predict_images({ckpt!r}, paths, {out!r}, image_threshold=0.0, device="cpu", batch_size=1, num_workers=0,
                     heatmaps=False)
t2 = time.perf_counter()
assert all(r.error is None for r in res), [r.error for r in res if r.error]
print(json.dumps({{"first_s": t1 - t0, "steady_s": t2 - t1, "n": len(paths)}}))
"""

LINE_STEADY = """
import json, sys, time
sys.modules["torch"] = None
from prefilter_qa_line import open_scorer
paths = {paths!r}
scorer = open_scorer({bundle!r}, backend={backend!r}, threads={threads}, batch_size=1)
scorer.score_images(paths[:1])
t1 = time.perf_counter()
res = scorer.score_images(paths)
t2 = time.perf_counter()
assert all(r.verdict != "ERROR" for r in res), [r.error for r in res]
print(json.dumps({{"steady_s": t2 - t1, "n": len(paths)}}))
"""

TORCH_FIRST = """
import sys, torch
torch.set_num_threads({threads})
from engine.evaluation.predict import predict_images
r = predict_images({ckpt!r}, [{image!r}], {out!r}, image_threshold=0.0, device="cpu", batch_size=1, num_workers=0,
                   heatmaps=False)
assert r[0].error is None
"""


def _timed(code: str | None, argv: list[str] | None = None) -> dict[str, Any]:
    """Run a fresh Python (code) or command (argv) under /usr/bin/time: wall s, peak RSS MB, stdout."""
    cmd = argv if argv is not None else [sys.executable, "-c", code]
    proc = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M", *cmd], cwd=REPO, capture_output=True, text=True,
                          timeout=3600)
    stats = [ln for ln in proc.stderr.splitlines() if ln.startswith("TIME ")]
    if proc.returncode != 0 or not stats:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {proc.stderr[-800:]}")
    _, wall, kb = stats[-1].split()
    return {"wall_s": float(wall), "peak_mb": int(kb) / 1024, "stdout": proc.stdout}


def prepare(preset: str, n: int, work: Path) -> tuple[Path, Path, list[Path]]:
    """A checkpoint of the preset (random weights), its released bundle, and n demo images."""
    import numpy as np
    import torch

    from bench.data import demo_set
    from bench.models import timing_config
    from engine.config import config_to_dict, score_rule
    from engine.models import build_ae, build_dfr, build_features
    from engine.models.checkpoint import save_checkpoint
    from engine.release.bundle import Candidate, ReleaseSpec, write_bundle
    from engine.release.graph import torch_outputs

    cfg, _ = timing_config(preset, "cpu", weights="random")
    torch.manual_seed(0)
    latent = getattr(cfg, "latent_dim", None) or 64
    model = build_ae(cfg) if cfg.model == "ae" else build_dfr(cfg, build_features(cfg), latent)
    ckpt = save_checkpoint(work / f"{preset}.pt", model.eval(), cfg, 0, info={"latent_dim": latent})
    root = demo_set(cfg.input_size, 4, n // 2, n - n // 2)
    ok, nok = sorted((root / "test" / "ok").glob("*.png")), sorted((root / "test" / "nok").rglob("*.png"))
    images = (ok + nok)[:n]
    from prefilter_qa_line.imagerule import model_input, read_image

    scores, _ = torch_outputs(model, np.stack([model_input(read_image(p), cfg.input_size) for p in images[:16]]))
    spec = ReleaseSpec(run_id=0, checkpoint=ckpt, config=config_to_dict(cfg),
                       threshold={"id": None, "image": float(np.median(scores)), "pixel": None, "review_band": None},
                       map_range=None, score_rule=score_rule(config_to_dict(cfg)),
                       candidates=[Candidate(p, "ok") for p in ok[:8]] + [Candidate(p, "nok") for p in nok[:8]])
    write_bundle(spec, work / f"bundle-{preset}")
    return ckpt, work / f"bundle-{preset}", images


def measure(preset: str, n: int, threads: int, work: Path) -> list[dict[str, Any]]:
    ckpt, bundle, images = prepare(preset, n, work)
    paths = [str(p) for p in images]
    rows = []
    steady = json.loads(_timed(TORCH_STEADY.format(threads=threads, paths=paths, ckpt=str(ckpt),
                                                    out=str(work / "pred")))["stdout"])
    first = _timed(TORCH_FIRST.format(threads=threads, image=paths[0], ckpt=str(ckpt), out=str(work / "pred")))
    rows.append({"preset": preset, "scorer": "torch predict", "ms_per_image": 1000 * steady["steady_s"] / n,
                 "first_s": first["wall_s"], "peak_mb": first["peak_mb"]})
    backends = ["onnxruntime"]
    try:
        import openvino  # noqa: F401

        backends.append("openvino")
    except ImportError:
        pass
    for backend in backends:
        steady = json.loads(_timed(LINE_STEADY.format(paths=paths, bundle=str(bundle), backend=backend,
                                                      threads=threads))["stdout"])
        first = _timed(None, [sys.executable, "-m", "prefilter_qa_line", "score", str(bundle), paths[0],
                              "--backend", backend, "--threads", str(threads), "--batch-size", "1",
                              "--results", str(work / f"r-{backend}.jsonl")])
        rows.append({"preset": preset, "scorer": f"line {backend} f32", "ms_per_image": 1000 * steady["steady_s"] / n,
                     "first_s": first["wall_s"], "peak_mb": first["peak_mb"]})
    base = rows[0]["ms_per_image"]
    for r in rows:
        r["images_per_s"] = 1000.0 / r["ms_per_image"]
        r["speedup"] = base / r["ms_per_image"]
    return rows


COLS = [("preset", "preset"), ("scorer", "scorer"), ("images_per_s", "img/s b1"), ("ms_per_image", "ms/img"),
        ("speedup", "vs torch"), ("first_s", "start to 1st verdict s"), ("peak_mb", "peak RSS MB")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.line", description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["ae", "dfr"])
    p.add_argument("--images", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    report: dict[str, Any] = {"benchmark": "line", "machine": machine(), "threads": args.threads,
                              "images": args.images, "rows": []}
    with tempfile.TemporaryDirectory(prefix="bench-line-") as tmp:
        for preset in args.presets:
            print(f"[line] {preset} ...", file=sys.stderr, flush=True)
            report["rows"] += measure(preset, args.images, args.threads, Path(tmp))
    report["machine"]["load1_end"] = load1()
    path = write_json(args.json, report, "line.json")
    print(table(report["rows"], COLS))
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
