"""Reference detectors ("anchors"): anomalib's PaDiM, DFM and PatchCore on the product's terms.

    .venv/bin/python -m bench.anchors --data DIR [--anchors padim dfm patchcore] [--json PATH]
    .venv/bin/python -m bench.anchors --demo                     # the 256² demo dataset

Why: a figure of ours means little without a well-known method beside it, measured on the same
footing. So the anchors get the product's EfficientNet-Lite0 weights (`create_backbone`), its
normalisation (mean = std = 0.5), its image rule and input size (256²), its split (the import's
image order, 10 % of train OK held out as `dataset_snapshot` draws it) and its metric code
(`compute_metrics`, binned pixel AUROC / AUPRO to FPR 0.3 at input resolution). anomalib's torch
models are fed batches directly (no Lightning, no anomalib pre-/post-processing). "train s" =
backbone pass over the train images + fit (Gaussian / PCA / coreset); "eval s" = inference on
the holdout and test images with maps at input size; decoding is done once, before (decode s).
Rows carry the keys of `bench.accuracy`'s rows. A benchmark: nothing in engine/ imports anomalib.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # anomalib's coreset progress bar (read when tqdm is imported)

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from bench.common import REPO, load1, machine, set_threads, table, write_json

BACKBONE = "tf_efficientnet_lite0"
ANCHORS = ("padim", "dfm", "patchcore")
PADIM_LAYERS = ["blocks.1", "blocks.2", "blocks.4"]  # strides 4, 8, 16 (24 + 40 + 112 channels)
DFM_LAYER = "blocks.4"  # stride 16, 112 channels
PATCHCORE_LAYERS = ["blocks.2", "blocks.3"]  # anomalib's default layer2/layer3 are ResNet names
MISSING = 'anomalib is not installed: pip install -e ".[bench]"  (extra "bench" = anomalib==2.7.0)'


def _engine(new: str, old: str) -> ModuleType:
    """engine/ is being regrouped into packages: the module's new home, else its old one."""
    try:
        return importlib.import_module(new)
    except ModuleNotFoundError as exc:
        if exc.name is None or not new.startswith(exc.name):
            raise
        return importlib.import_module(old)


@dataclass
class Data:
    train: np.ndarray  # (N, S, S, 3) uint8, train OK less the holdout
    holdout: np.ndarray  # (H, S, S, 3) uint8
    test: np.ndarray  # (T, S, S, 3) uint8
    labels: list[str]  # "ok" | "nok" per test image
    defects: list[str | None]
    masks: list[np.ndarray | None]  # (S, S) bool for NOK images with a mask
    decode_s: float


def load_data(root: Path, size: int, holdout_share: float, seed: int) -> Data:
    """The import's images in the import's order (so ids, hence the holdout draw, match a run)."""
    im = _engine("engine.intake.images", "engine.images")
    plan = _engine("engine.intake.importer", "engine.importer").scan_folder(root)
    train = [i for i in plan.images if i.split == "train" and i.label == "ok"]
    test = [i for i in plan.images if i.split == "test" and i.label != "unknown"]
    if len(train) < 2 or not test:
        raise SystemExit(f"{root}: needs >= 2 train OK and some test images ({len(train)}, {len(test)})")
    picked: set[int] = set()
    n_hold = round(len(train) * holdout_share)
    if n_hold and len(train) - n_hold >= 2:  # engine/jobs/queue.py dataset_snapshot, on import order
        picked = set(random.Random(seed).sample(range(len(train)), n_hold))
    groups = ([s for j, s in enumerate(train) if j not in picked],  # train, holdout, test
              [s for j, s in enumerate(train) if j in picked], test)
    t0 = time.perf_counter()

    def image(p: Path) -> np.ndarray:
        return im.resize_image(im.read_image(p), size)  # (S, S, 3) uint8

    def mask(s: Any) -> np.ndarray | None:
        hw = (s.info.height, s.info.width)
        return None if s.mask_path is None else im.resize_mask(im.read_mask(s.mask_path, expected_hw=hw), size)

    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        arrays = [np.stack(list(pool.map(image, [s.path for s in g]))) if g
                  else np.zeros((0, size, size, 3), np.uint8) for g in groups]
        masks = list(pool.map(mask, test))
    return Data(*arrays, [s.label for s in test], [s.defect_type for s in test], masks, time.perf_counter() - t0)


def build_anchor(name: str, opts: argparse.Namespace) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(anomalib torch model, its TimmFeatureExtractor still with random weights, settings used)."""
    if name == "padim":
        from anomalib.models.image.padim.torch_model import PadimModel

        s = {"layers": PADIM_LAYERS, "n_features": opts.padim_features, "gaussian_blur_sigma": 4,
             "score": "max of the map"}
        model = PadimModel(backbone=BACKBONE, layers=PADIM_LAYERS, pre_trained=False, n_features=opts.padim_features)
    elif name == "dfm":
        from anomalib.models.image.dfm.torch_model import DFMModel

        s = {"layers": [DFM_LAYER], "pooling_kernel_size": 4, "pca_level": 0.97, "score_type": "fre"}
        model = DFMModel(backbone=BACKBONE, layer=DFM_LAYER, pre_trained=False, pooling_kernel_size=4,
                         n_comps=0.97, score_type="fre")
    else:
        from anomalib.models.image.patchcore.torch_model import PatchcoreModel

        s = {"layers": opts.patchcore_layers, "coreset_sampling_ratio": opts.coreset_ratio, "num_neighbors": 9,
             "feature_pooler": "avg 3x3", "gaussian_blur_sigma": 4}
        log = logging.getLogger("anomalib.models.components.feature_extractors.timm")
        log.disabled = True  # it warns that blocks.3 is no features_only output and drops it: handled below
        model = PatchcoreModel(layers=opts.patchcore_layers, backbone=BACKBONE, pre_trained=False, num_neighbors=9)
        log.disabled = False
    fe, s["extractor"] = model.feature_extractor, "timm features_only"
    if list(fe.layers) != list(s["layers"]):  # e.g. blocks.3: take it from timm's FX graph of the net
        import timm
        from timm.models import create_feature_extractor

        net = timm.create_model(BACKBONE, pretrained=False)
        fe.feature_extractor = create_feature_extractor(net, return_nodes={x: x for x in s["layers"]})
        fe.layers, s["extractor"] = list(s["layers"]), "timm FX graph (not all layers are features_only outputs)"
    return model, fe, s


def load_backbone(fe: Any, product: nn.Module, probe: torch.Tensor) -> dict[str, Any]:
    """Copy the product backbone's tensors into the anchor's extractor, strictly, and prove it.

    Every extractor key must come from the product's state_dict with the same shape (the product
    keys left over are the classifier head, or later blocks for a truncated graph). Proof: after
    loading every tensor equals the product's, the features equal the product backbone's own
    module outputs on a real batch, and they moved away from the random-init features.
    """
    src, net = product.state_dict(), fe.feature_extractor
    dst = net.state_dict()
    missing = [k for k in dst if k not in src]
    shapes = [k for k in dst if k in src and src[k].shape != dst[k].shape]
    if missing or shapes:
        raise RuntimeError(f"backbone keys not in the product weights: {missing[:5]}; shape mismatch: {shapes[:5]}")
    before = {k: v.float() for k, v in fe(probe).items()}
    net.load_state_dict({k: src[k] for k in dst}, strict=True)
    after = net.state_dict()
    if any(not torch.equal(after[k], src[k]) for k in dst):
        raise RuntimeError("backbone tensors differ from the product's after loading")
    refs: dict[str, torch.Tensor] = {}
    hooks = [product.get_submodule(x).register_forward_hook(lambda _m, _i, out, x=x: refs.__setitem__(x, out))
             for x in fe.layers]
    with torch.no_grad():
        product(probe)
    for h in hooks:
        h.remove()
    feats = fe(probe)
    vs_product = max(float((feats[x] - refs[x]).abs().max()) for x in fe.layers)
    vs_random = min(float((feats[x] - before[x]).abs().mean() / feats[x].abs().mean().clamp_min(1e-12))
                    for x in fe.layers)
    if vs_product > 1e-4 or vs_random < 1e-3:
        raise RuntimeError(f"features after loading: max |ours - product| {vs_product:.3g}, "
                           f"mean change from random init {vs_random:.3g}")
    unused = sorted({".".join(k.split(".")[:2 if k.startswith("blocks.") else 1]) for k in src if k not in dst})
    return {"keys_loaded": len(dst), "keys_product": len(src), "product_keys_unused": unused,
            "features_max_abs_diff_vs_product": vs_product, "features_rel_change_vs_random_init": vs_random,
            "feature_std_random_init": float(before[fe.layers[-1]].std()),
            "feature_std_loaded": float(feats[fe.layers[-1]].std())}


def _batches(x: np.ndarray, bs: int, mean: torch.Tensor, std: torch.Tensor) -> Iterator[torch.Tensor]:
    for i in range(0, len(x), bs):
        # (B, 3, S, S) contiguous NCHW, as anomalib's loaders give it (its DFM .view()s features)
        xb = torch.from_numpy(x[i:i + bs]).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
        yield (xb - mean) / std


def _score(model: nn.Module, x: np.ndarray, bs: int, mean: torch.Tensor, std: torch.Tensor,
           size: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores (N,), maps (N, S, S) float32) in eval mode, maps upsampled to the input if coarser."""
    scores, maps = [np.zeros(0, np.float32)], [np.zeros((0, size, size), np.float32)]
    with torch.no_grad():
        for xb in _batches(x, bs, mean, std):
            out = model(xb)
            amap = out.anomaly_map.float()
            amap = amap if amap.ndim == 4 else amap.unsqueeze(1)  # (B, 1, h, w)
            if amap.shape[-2:] != (size, size):
                amap = F.interpolate(amap, size=(size, size), mode="bilinear", align_corners=False)
            scores.append(out.pred_score.float().reshape(-1).numpy())
            maps.append(amap[:, 0].numpy())
    return np.concatenate(scores), np.concatenate(maps)


def metrics(data: Data, scores: np.ndarray, maps: np.ndarray, hold: np.ndarray, size: int,
            target_frr: float) -> dict[str, Any]:
    """The product's metrics, called as engine/evaluation/evaluate.py calls them (no ROI here)."""
    pm = _engine("engine.evaluation.pixel_metrics", "engine.pixel_metrics")
    compute = _engine("engine.evaluation.metrics", "engine.metrics").compute_metrics
    pixel = None
    if any(m is not None for m in data.masks):
        scan = pm.RangeScanner(None)
        for amap in maps:
            scan.update(amap)
        acc = pm.PixelAccumulator(scan.binning(), None)
        for amap, lab, m in zip(maps, data.labels, data.masks):
            if lab == "ok" or m is not None:  # NOK without mask: its defect would count as negatives
                acc.update(amap, m)
        pixel = acc.result()
    return compute(data.labels, scores.tolist(), data.defects, hold.tolist(), target_frr, pixel, (size, size))


def run_anchor(name: str, data: Data, product: nn.Module, opts: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(opts.seed)  # PaDiM's channel draw, PatchCore's coreset start and projection
    l0, w0, bs, size = load1(), time.perf_counter(), opts.batch_size, opts.size
    model, fe, settings = build_anchor(name, opts)
    mean = torch.tensor(product.norm_mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(product.norm_std, dtype=torch.float32).view(1, 3, 1, 1)
    weights = load_backbone(fe, product, next(_batches(data.train, 4, mean, std)))
    t0 = time.perf_counter()
    model.train()  # anomalib collects embeddings in training mode (its extractor keeps itself in eval)
    with torch.no_grad():
        for xb in _batches(data.train, bs, mean, std):
            model(xb)
    if name == "patchcore":
        with warnings.catch_warnings():  # about an argument we do not pass; Lightning's call warns alike
            warnings.simplefilter("ignore", DeprecationWarning)
            model.subsample_embedding(opts.coreset_ratio)
        settings["memory_bank"] = int(model.memory_bank.shape[0])
    else:
        model.fit()
    train_s = time.perf_counter() - t0
    model.eval()
    t0 = time.perf_counter()
    hold = _score(model, data.holdout, bs, mean, std, size)[0]
    scores, maps = _score(model, data.test, bs, mean, std, size)
    eval_s, t0 = time.perf_counter() - t0, time.perf_counter()
    m = metrics(data, scores, maps, hold, size, opts.target_frr)
    return {
        "preset": f"anchor:{name}", "model": f"anomalib {name}", "status": "succeeded",
        "image_auroc": m["image_auroc"], "image_auroc_ci95": m["image_auroc_ci95"],
        "pixel_auroc": m["pixel_auroc"], "aupro": m["aupro"], "f1_max": m["f1_max"],
        "frr_at_zero_escapes": m["fpr_at_full_recall"],
        "per_defect": {k: v.get("image_auroc") for k, v in (m.get("per_defect") or {}).items()},
        "train_s": train_s, "eval_s": eval_s, "metrics_s": time.perf_counter() - t0,
        "wall_s": time.perf_counter() - w0, "n_train": len(data.train), "n_holdout": len(data.holdout),
        "n_ok": m["n_ok"], "n_nok": m["n_nok"], "input_size": size, "backbone": BACKBONE,
        "settings": settings, "weights": weights, "load1": max(l0, load1())}


def _demo_data(home: Path) -> Path:
    from engine.workspace import DATABASE_URL_ENV, HOME_ENV

    env = os.environ | {HOME_ENV: str(home)}
    env.pop(DATABASE_URL_ENV, None)
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "demo", "--json"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"prefilter-qa demo exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return home / "demo-data"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.anchors", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="dataset folder in an import layout (seed / mvtec)")
    src.add_argument("--demo", action="store_true", help="generate `prefilter-qa demo` in a temp workspace")
    p.add_argument("--anchors", nargs="+", choices=ANCHORS, default=list(ANCHORS))
    p.add_argument("--json", type=Path, default=None, help="default bench/results/anchors-<dataset>.json")
    p.add_argument("--weights", choices=("pretrained", "random"), default="pretrained",
                   help="backbone weights (random: smoke tests only)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--size", type=int, default=None, help="input side (default: the dfr preset's, 256)")
    p.add_argument("--padim-features", type=int, default=100, help="PaDiM's random channel subset (of 176)")
    p.add_argument("--coreset-ratio", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=None, help="hold-out draw, PaDiM's channels, PatchCore's coreset "
                   "(default: the dfr preset's, as `bench.accuracy --set seed=S` draws them)")
    p.add_argument("--patchcore-layers", nargs="+", default=PATCHCORE_LAYERS)
    args = p.parse_args(argv)
    if importlib.util.find_spec("anomalib") is None:
        print(MISSING, file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore", category=FutureWarning)  # anomalib/timm import-path notices
    from engine.config import make_config
    from engine.models.backbones import create_backbone

    dfr = make_config("dfr", "dfr")  # the product's run settings the anchors share
    args.size, args.target_frr = args.size or dfr.input_size, dfr.target_frr
    args.seed = dfr.seed if args.seed is None else args.seed
    threads = set_threads()
    home = Path(tempfile.mkdtemp(prefix="bench-anchors-")) if args.demo else None
    try:
        root = _demo_data(home) if home else args.data.expanduser().resolve()
        data = load_data(root, args.size, dfr.holdout_share, args.seed)
    finally:
        if home is not None:  # the images are in memory now
            shutil.rmtree(home, ignore_errors=True)
    label = "demo-256" if args.demo else root.name
    product = create_backbone(BACKBONE, args.weights)
    report: dict[str, Any] = {
        "benchmark": "anchors", "dataset": label, "machine": machine() | {"torch_threads": threads},
        "args": {k: str(v) for k, v in vars(args).items()}, "anomalib": importlib.metadata.version("anomalib"),
        "backbone": {"name": BACKBONE, "weights": args.weights, "source": product.weights_source,
                     "sha256": product.weights_sha256, "norm_mean": product.norm_mean, "norm_std": product.norm_std},
        "data": {"train_ok": len(data.train), "holdout": len(data.holdout), "test_ok": data.labels.count("ok"),
                 "test_nok": data.labels.count("nok"), "masks": sum(m is not None for m in data.masks),
                 "decode_s": data.decode_s, "holdout_share": dfr.holdout_share, "seed": args.seed},
        "rows": []}
    for name in args.anchors:
        print(f"[anchors] {name} ...", file=sys.stderr, flush=True)
        try:
            report["rows"].append(run_anchor(name, data, product, args))
        except Exception as exc:  # noqa: BLE001 - one failed anchor must not hide the others
            report["rows"].append({"preset": f"anchor:{name}", "status": "failed", "note": repr(exc)[:500]})
    report["machine"]["load1_end"] = load1()
    path = write_json(args.json, report, f"anchors-{label}.json")
    print(render(report))
    print(f"\nJSON: {path}")
    return 0 if all(r["status"] == "succeeded" for r in report["rows"]) else 1


COLS = [("preset", "anchor"), ("status", "status"), ("image_auroc", "image AUROC"), ("ci", "95% CI"),
        ("pixel_auroc", "pixel AUROC"), ("aupro", "AUPRO"), ("frr_at_zero_escapes", "FRR @ 0 escapes"),
        ("train_s", "train s"), ("eval_s", "eval s"), ("defects", "per defect image AUROC"),
        ("load1", "load1"), ("note", "note")]


def render(report: dict[str, Any]) -> str:
    m, d, b = report["machine"], report["data"], report["backbone"]
    rows = [{**r, "ci": r.get("image_auroc_ci95"), "note": (r.get("note") or "")[:90],
             "defects": ", ".join(f"{k} {'-' if v is None else f'{v:.3f}'}"
                                  for k, v in r.get("per_defect", {}).items())} for r in report["rows"]]
    lines = [(f"Dataset {report['dataset']}: {d['train_ok']} train OK (+{d['holdout']} held out), {d['test_ok']} "
              f"test OK, {d['test_nok']} test NOK, {d['masks']} masks; decode {d['decode_s']:.1f} s"),
             (f"anomalib {report['anomalib']}, {b['name']} weights {b['weights']} ({b['source']}), "
              f"norm mean {b['norm_mean'][0]} std {b['norm_std'][0]}, input {report['args']['size']}²"),
             (f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['torch_threads']} threads; "
              f"load1 {m['load1_start']} -> {m.get('load1_end')}"), "", table(rows, COLS), ""]
    for r in report["rows"]:
        if r["status"] == "succeeded":
            w = r["weights"]
            lines.append(f"{r['preset']}: {r['settings']}; {w['keys_loaded']} backbone tensors loaded, features "
                         f"= product's (max diff {w['features_max_abs_diff_vs_product']:.2g})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
