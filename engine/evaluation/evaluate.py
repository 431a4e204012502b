"""Evaluation of a trained run: scores, float16 heatmaps, metrics.json (no DB; a plain function).

Pipeline: decoding threads read + resize (+ masks) in parallel with the model;
batched inference under `torch.inference_mode()` with channels-last weights and inputs
(`engine.evaluation.loading.prepare_model` / `model_input`: 1.3-2x faster on CPU, see BENCHMARKS.md);
heatmaps written as float16 by a small thread pool; pixel metrics in a second pass over the
stored maps (binned, `engine.evaluation.pixel_metrics`), so no evaluation holds all maps in RAM (masks are
kept bit-packed until then).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.evaluation.heatmaps import load_heatmap, save_heatmap, score_map_rel
from engine.evaluation.metrics import compute_metrics
from engine.evaluation.pixel_metrics import PixelAccumulator, RangeScanner
from engine.fsutil import atomic_write_text
from engine.intake.images import resize_mask

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None] | None
PIXEL_OK_QUANTILE = 0.999  # pixel threshold without masks: this quantile of OK map pixels
DISPLAY_HIGH_QUANTILE = 0.999  # map_range vmax: this quantile of all test map pixels


@dataclass(frozen=True)
class EvalItem:
    image_id: int
    path: Path
    label: str  # "ok" | "nok"
    defect_type: str | None
    mask_path: Path | None


@dataclass
class ImageScore:
    image_id: int
    score: float
    heatmap: str  # path relative to out_dir
    score_map: str | None = None  # map the score came from, when not the heatmap (relative to out_dir)


@dataclass
class EvalResult:
    metrics: dict
    images: list[ImageScore]
    holdout_scores: list[float]
    auto_threshold: dict  # {"image", "pixel", "rule": "f1_max" | "ok_only" | "zero_escape" | None, "band"}
    seconds: float
    failed: list[tuple[str, str]]  # (path, reason): unreadable images, unusable masks


class _Scanned:
    """Per-stream results of the inference pass."""

    def __init__(self, roi: np.ndarray | None) -> None:
        self.scores: dict[int, float] = {}  # position in the stream -> score
        self.masks: dict[int, tuple[np.ndarray, tuple[int, int]]] = {}  # position -> packed mask
        self.scan = RangeScanner(roi)
        self.score_scan = RangeScanner(roi)  # the score maps, when the model has its own (Prediction.score_map)
        self.score_maps: set[int] = set()  # positions whose score map was written


def _run_stream(model: object, loader: object, device: object, amp: bool, scanned: _Scanned,
                on_map: Callable[[int, np.ndarray, np.ndarray | None], None] | None,
                failed: list[tuple[str, str]],
                paths: Sequence[Path], tick: Callable[[int], None]) -> None:
    """Inference over one loader; maps go to `on_map` (e.g. the writer) and the range scanner."""
    import torch

    from engine.evaluation.loading import model_input
    from engine.training.data import iterate

    autocast = torch.autocast("cuda", enabled=amp and device.type == "cuda")
    with torch.inference_mode(), autocast:
        for batch in iterate(loader):
            idx = batch["i"].tolist()
            for i, err, mpath, merr in zip(idx, batch["err"], batch["mask_path"],
                                           batch["mask_err"]):
                if err:
                    failed.append((str(paths[i]), err))
                elif merr:
                    failed.append((mpath, f"mask left out of pixel metrics: {merr}"))
            ok = torch.tensor([not e for e in batch["err"]], dtype=torch.bool)
            if ok.any():
                x = model_input(batch["x"] if ok.all() else batch["x"][ok], device)  # (B', 3, S, S)
                pred = model(x)
                scores = pred.score.float().cpu().numpy()  # (B',)
                maps = pred.anomaly_map.float().cpu().numpy()  # (B', S, S)
                maps = np.clip(maps, -65504, 65504).astype(np.float16)
                smaps = None if pred.score_map is None else np.clip(
                    pred.score_map.float().cpu().numpy(), -65504, 65504).astype(np.float16)  # (B', S, S)
                kept = [i for i, good in zip(idx, ok.tolist()) if good]
                for j, i in enumerate(kept):
                    if not np.isfinite(scores[j]):  # a broken model must not sink all metrics
                        failed.append((str(paths[i]), "model produced a non-finite score"))
                        continue
                    scanned.scores[i] = float(scores[j])
                    scanned.scan.update(maps[j])
                    if smaps is not None:
                        scanned.score_scan.update(smaps[j])
                        scanned.score_maps.add(i)
                    if on_map is not None:
                        on_map(i, maps[j], None if smaps is None else smaps[j])
                for i, has, m in zip(idx, batch["has_mask"].tolist(), batch["mask"].numpy()):
                    if has and i in scanned.scores:
                        scanned.masks[i] = (np.packbits(m), tuple(m.shape))
            tick(len(idx))


def evaluate_run(checkpoint: Path, items: Sequence[EvalItem], out_dir: Path,
                 holdout: Sequence[Path] = (), roi: np.ndarray | None = None,
                 progress: Progress = None, device: str = "auto",
                 batch_size: int | None = None, num_workers: int | None = None,
                 compile: bool | None = None) -> EvalResult:
    """Score test items and holdout OK images, write heatmaps/scores.csv/metrics.json atomically.

    `roi` (bool, any size; resized nearest to the input) overrides the checkpoint's ROI;
    None keeps the checkpoint's. Unreadable images land in `failed`, the rest are evaluated.
    `num_workers` overrides config.num_workers (decoding threads; the caller knows its cores).
    `compile`: torch.compile the model (None: $PREFILTER_QA_COMPILE, off by default).
    """
    import torch

    from engine.evaluation.loading import make_eval_loader, maybe_compile, prepare_model
    from engine.models.checkpoint import load_model

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    (out_dir / "heatmaps").mkdir(parents=True, exist_ok=True)
    model, config = load_model(Path(checkpoint), device=device)
    if num_workers is not None:
        config = dataclasses.replace(config, num_workers=int(num_workers))
    model = prepare_model(model)
    dev = next(model.parameters()).device
    size = int(config.input_size)
    if roi is not None:
        roi = resize_mask(np.asarray(roi, dtype=bool), size)
        model.set_roi(torch.from_numpy(roi))
    elif getattr(model, "roi", None) is not None:
        roi = model.roi.cpu().numpy().astype(bool)
    runner = maybe_compile(model, compile)
    bs = int(batch_size or config.batch_size)
    amp = bool(config.amp)
    items = list(items)
    total = max(1, len(items) + len(holdout))
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress:
            progress(0.9 * done[0] / total, f"scored {done[0]}/{total} images")

    failed: list[tuple[str, str]] = []
    hold = _Scanned(roi)
    if holdout:
        loader = make_eval_loader(list(holdout), config, bs)
        _run_stream(runner, loader, dev, amp, hold, None, failed, list(holdout), tick)

    test = _Scanned(roi)
    ok_scan, ok_score_scan = RangeScanner(roi), RangeScanner(roi)
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="heatmap-writer")
    pending: list[Future] = []

    def on_map(i: int, amap: np.ndarray, smap: np.ndarray | None) -> None:  # (S, S) float16 each
        if items[i].label == "ok":
            ok_scan.update(amap)
            if smap is not None:
                ok_score_scan.update(smap)
        pending.append(pool.submit(save_heatmap, out_dir / _heatmap_rel(items[i]), amap, False))
        if smap is not None:  # second file next to the heatmap: the map the score came from
            pending.append(pool.submit(save_heatmap, out_dir / score_map_rel(_heatmap_rel(items[i])),
                                       smap, False))
        while len(pending) > 4 * bs:  # bound the maps waiting in memory
            pending.pop(0).result()

    try:
        loader = make_eval_loader([it.path for it in items], config, bs,
                                  [it.mask_path if it.label == "nok" else None for it in items])
        _run_stream(runner, loader, dev, amp, test, on_map, failed,
                    [it.path for it in items], tick)
        for f in pending:
            f.result()  # a failed write (disk full) raises here
    finally:
        pool.shutdown(wait=True)

    if progress:
        progress(0.92, "pixel metrics")
    pixel = _pixel_metrics(items, test, roi, out_dir) if test.masks else None
    done_idx = sorted(test.scores)
    images = [ImageScore(items[i].image_id, test.scores[i], _heatmap_rel(items[i]),
                         score_map_rel(_heatmap_rel(items[i])) if i in test.score_maps else None)
              for i in done_idx]
    holdout_scores = [hold.scores[i] for i in sorted(hold.scores)]
    metrics = compute_metrics([items[i].label for i in done_idx],
                              [test.scores[i] for i in done_idx],
                              [items[i].defect_type for i in done_idx], holdout_scores,
                              float(config.target_frr), pixel, (size, size))
    ok_pixels = hold.scan if hold.scan.n_maps else ok_scan
    px_q = ok_pixels.quantile(PIXEL_OK_QUANTILE)
    metrics["map_range"] = _map_range(test.scan, ok_scan, hold.scan)
    metrics["score_maps"] = bool(test.score_maps)  # heatmaps/<id>.score.npy beside each heatmap
    metrics["score_map_range"] = (_map_range(test.score_scan, ok_score_scan, hold.score_scan)
                                  if test.score_maps else None)
    metrics["pixel_threshold"] = {"f1_max": pixel.f1_threshold if pixel else None,
                                  "ok_quantile": px_q, "ok_quantile_level": PIXEL_OK_QUANTILE,
                                  "ok_quantile_source": "holdout" if hold.scan.n_maps else
                                  ("test_ok" if ok_scan.n_maps else None)}
    auto = _auto_threshold(metrics, pixel.f1_threshold if pixel else None, px_q)
    auto = _apply_policy(auto, config, metrics, [items[i].label == "nok" for i in done_idx],
                         [test.scores[i] for i in done_idx], holdout_scores)
    metrics["auto_threshold"] = auto
    metrics["failed"] = [{"path": p, "reason": r} for p, r in failed]
    seconds = time.perf_counter() - t0
    metrics["seconds"] = seconds
    _write_outputs(out_dir, items, test, metrics)
    if progress:
        progress(1.0, "done")
    return EvalResult(metrics, images, holdout_scores, auto, seconds, failed)


def _heatmap_rel(item: EvalItem) -> str:
    return f"heatmaps/{item.image_id}.npy"


def _pixel_metrics(items: list[EvalItem], test: _Scanned, roi: np.ndarray | None,
                   out_dir: Path) -> "object":
    """Second pass: stored float16 maps + masks into the binned accumulator.

    OK images count as all-negative; NOK images without a usable mask are left out (their
    defect pixels would otherwise count as negatives).
    """
    acc = PixelAccumulator(test.scan.binning(), roi)
    for i in sorted(test.scores):
        if items[i].label == "nok" and i not in test.masks:
            continue
        amap = load_heatmap(out_dir / _heatmap_rel(items[i]))  # (S, S)
        mask = None
        if i in test.masks:
            bits, shape = test.masks[i]
            mask = np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).astype(bool)
        acc.update(amap, mask)
    return acc.result()


def _map_range(test: RangeScanner, ok: RangeScanner, hold: RangeScanner) -> dict:
    """Display range shared by all heatmaps: OK median (background dark) to a high quantile."""
    ref = ok if ok.n_maps else (hold if hold.n_maps else test)
    vmin, vmax = ref.quantile(0.5), test.quantile(DISPLAY_HIGH_QUANTILE)
    if vmin is None or vmax is None:
        return {"vmin": None, "vmax": None}
    if not vmax > vmin:
        vmax = max(test.vmax, vmin + 1e-6)
    return {"vmin": vmin, "vmax": float(vmax)}


def _auto_threshold(metrics: dict, pixel_f1: float | None, pixel_q: float | None) -> dict:
    """F1-max when NOK images were scored, else the OK-only rule (the automatic threshold)."""
    if metrics["n_nok"] and metrics["f1_threshold"] is not None:
        image, rule = metrics["f1_threshold"], "f1_max"
    elif metrics["ok_only_threshold"] is not None:
        image, rule = metrics["ok_only_threshold"], "ok_only"
    else:
        image, rule = None, None
    return {"image": image, "pixel": pixel_f1 if pixel_f1 is not None else pixel_q, "rule": rule,
            "pixel_rule": "pixel_f1_max" if pixel_f1 is not None else
            (f"ok_pixel_quantile_{PIXEL_OK_QUANTILE}" if pixel_q is not None else None)}


def _apply_policy(auto: dict, config: object, metrics: dict, y_nok: list[bool], scores: list[float],
                  holdout: list[float]) -> dict:
    """The run's threshold policy (config.auto_threshold, auto_review_band; a retrain carries its
    parent's) on top of the default automatic threshold; "band" is (lo, hi) or None."""
    from engine.evaluation.decisions import suggest_band

    rule = getattr(config, "auto_threshold", "f1_max")
    y, s = np.asarray(y_nok, bool), np.asarray(scores, np.float64)
    if rule == "zero_escape" and y.any():
        auto = auto | {"image": float(s[y].min()), "rule": "zero_escape"}
    elif rule == "ok_only" and metrics.get("ok_only_threshold") is not None:  # at config.target_frr
        auto = auto | {"image": float(metrics["ok_only_threshold"]), "rule": "ok_only"}
    band = None
    if getattr(config, "auto_review_band", False) and auto["image"] is not None and s.size:
        b = suggest_band(auto["image"], y, s, np.asarray(holdout, np.float64) if len(holdout) else None)
        band = (b.low, b.high)
    return auto | {"band": band}


def _write_outputs(out_dir: Path, items: list[EvalItem], test: _Scanned, metrics: dict) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image_id", "path", "label", "defect_type", "score", "heatmap", "score_map"])
    for i in sorted(test.scores):
        it = items[i]
        w.writerow([it.image_id, str(it.path), it.label, it.defect_type or "",
                    repr(test.scores[i]), _heatmap_rel(it),
                    score_map_rel(_heatmap_rel(it)) if i in test.score_maps else ""])
    atomic_write_text(out_dir / "scores.csv", buf.getvalue())
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, allow_nan=False, indent=1))
