"""Score new images with a stored model and threshold (`prefilter-qa predict`).

Verdicts follow `engine.evaluation.metrics.verdicts` (NOK iff score >= threshold; review band
OK < lo <= REVIEW < hi <= NOK), so prediction and evaluation can never disagree. Heatmaps are
PNG overlays on the original image (original resolution), written by a small thread pool.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from prefilter_qa_line.heatmap import heatmap_names

from engine.evaluation.heatmaps import (
    mark_peak,
    mask_overlay,
    overlay,
    predicted_mask,
    score_peak,
    to_original_grid,
)
from engine.evaluation.metrics import verdicts
from engine.fsutil import atomic_write_bytes

log = logging.getLogger(__name__)

OUTLINE_RGB = (255, 255, 255)  # predicted-defect outline drawn when a pixel threshold is given


@dataclass
class PredictResult:
    path: str
    score: float | None
    verdict: str | None  # "OK" | "REVIEW" | "NOK"; None when the file could not be scored
    heatmap: str | None  # PNG overlay (original resolution)
    error: str | None  # why the file could not be scored
    score_map: str | None = None  # PNG overlay of the map the score came from, when not the heatmap
    peak: tuple[int, int] | None = None  # (row, col) on the original image where the score was found


def predict_images(checkpoint: Path, paths: Sequence[Path], out_dir: Path,
                   image_threshold: float, review_band: tuple[float, float] | None = None,
                   pixel_threshold: float | None = None,
                   map_range: tuple[float, float] | None = None, device: str = "auto",
                   batch_size: int | None = None, num_workers: int | None = None,
                   heatmaps: bool = True, score_map_range: tuple[float, float] | None = None
                   ) -> list[PredictResult]:
    """One result per path, in order; unreadable files get `error`, the rest are scored.

    `map_range` (vmin, vmax) should be the evaluation's `map_range` so colours match the
    dashboard; without it each overlay is scaled to its own map (1st..99.9th percentile).
    When the model's score comes from another map than its heatmap (DFR's default), that map is
    written as a second overlay `<stem>_score.png` (colours: `score_map_range`) with a ring where
    the score was found; otherwise the ring is on the heatmap. `heatmaps=False` writes no PNG.
    """
    import torch

    from engine.evaluation.loading import make_eval_loader, model_input, prepare_model
    from engine.models.checkpoint import load_model
    from engine.training.data import iterate

    verdicts([], image_threshold, review_band)  # a bad band fails before any work
    paths = [Path(p) for p in paths]
    out_dir = Path(out_dir)
    if heatmaps:
        out_dir.mkdir(parents=True, exist_ok=True)
    results = [PredictResult(str(p), None, None, None, None) for p in paths]
    if not paths:
        return results
    model, config = load_model(Path(checkpoint), device=device)
    model = prepare_model(model)
    if num_workers is not None:
        config = dataclasses.replace(config, num_workers=int(num_workers))
    dev = next(model.parameters()).device
    margin = int(getattr(config, "border_margin", 0) or 0)
    names = heatmap_names(paths)
    loader = make_eval_loader(paths, config, int(batch_size or config.batch_size),
                              keep_original=True)
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="overlay-writer")
    pending: list[Future] = []
    try:
        with torch.inference_mode():
            for batch in iterate(loader):
                idx = batch["i"].tolist()
                good = [j for j, e in enumerate(batch["err"]) if not e]
                for j, e in enumerate(batch["err"]):
                    if e:
                        results[idx[j]].error = e
                if not good:
                    continue
                xs = batch["x"] if len(good) == len(idx) else batch["x"][good]
                x = model_input(xs, dev)  # (B', 3, S, S)
                pred = model(x)
                scores = pred.score.float().cpu().numpy()  # (B',)
                maps = pred.anomaly_map.float().cpu().numpy()  # (B', S, S)
                smaps = None if pred.score_map is None else pred.score_map.float().cpu().numpy()
                for k, j in enumerate(good):
                    r = results[idx[j]]
                    if not np.isfinite(scores[k]):
                        r.error = "model produced a non-finite score"
                        continue
                    r.score = float(scores[k])
                    r.verdict = str(verdicts([r.score], image_threshold, review_band)[0])
                    orig = batch["orig"][j]
                    smap = maps[k] if smaps is None else smaps[k]  # (S, S) the score's own map
                    pr, pc, _ = score_peak(smap, margin)
                    sy, sx = orig.shape[0] / smap.shape[0], orig.shape[1] / smap.shape[1]
                    r.peak = (int((pr + 0.5) * sy), int((pc + 0.5) * sx))
                    if not heatmaps:
                        continue
                    png = out_dir / names[idx[j]]
                    r.heatmap = str(png)
                    pending.append(pool.submit(_write_overlay, png, orig, maps[k], map_range,
                                               pixel_threshold, r.peak if smaps is None else None))
                    if smaps is not None:
                        spng = out_dir / names[idx[j]].replace("_heatmap.png", "_score.png")
                        r.score_map = str(spng)
                        pending.append(pool.submit(_write_overlay, spng, orig, smaps[k],
                                                   score_map_range, None, r.peak))
        for f in pending:
            f.result()
    finally:
        pool.shutdown(wait=True)
    return results


def results_to_json(results: Sequence[PredictResult]) -> list[dict]:
    """The `predict --json` shape (README "Command line"), with "error"."""
    return [dataclasses.asdict(r) for r in results]


RESULT_COLUMNS = ("time", "run_id", "threshold_id", "path", "sha256", "score", "verdict", "heatmap",
                  "score_map", "peak_row", "peak_col", "error")


def check_results_file(path: Path) -> bool:
    """Refuse a results file we would not append to (before any image is scored); True if new."""
    from engine.errors import UserError

    path = Path(path)
    if path.suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
        raise UserError(f"{path}: results file must end in .csv or .jsonl")
    new = not path.exists() or path.stat().st_size == 0
    if path.suffix.lower() == ".csv" and not new:
        with open(path, encoding="utf-8", newline="") as fh:
            header = fh.readline().strip()
        if header != ",".join(RESULT_COLUMNS):
            raise UserError(f"{path}: not a predict results file (its first line is {header[:80]!r}); "
                            "choose another file")
    return new


def append_results(path: Path, rows: Sequence[dict]) -> None:
    """Append one line per row to a results log (`.csv` with a header when new, else JSON lines),
    so the calls of a shift add up in one file; the existing lines are never rewritten.
    Rows carry RESULT_COLUMNS (missing ones empty)."""
    import csv
    import io
    import json
    import os

    path = Path(path)
    new = check_results_file(path)
    as_csv = path.suffix.lower() == ".csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    if as_csv:
        w = csv.writer(buf, lineterminator="\n")
        if new:
            w.writerow(RESULT_COLUMNS)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in RESULT_COLUMNS])
    else:
        for r in rows:
            buf.write(json.dumps({c: r.get(c) for c in RESULT_COLUMNS}) + "\n")
    with open(path, "a", encoding="utf-8", newline="") as fh:  # one write: lines of two calls don't mix
        fh.write(buf.getvalue())
        fh.flush()
        os.fsync(fh.fileno())


def _write_overlay(png: Path, orig: np.ndarray, amap: np.ndarray,
                   map_range: tuple[float, float] | None, pixel_threshold: float | None,
                   peak: tuple[int, int] | None = None) -> None:
    """Overlay at the original resolution (+ outline of pixels >= pixel_threshold, + a ring at
    `peak`, (row, col) on the original), PNG."""
    if map_range is None or map_range[0] is None or map_range[1] is None:
        vmin, vmax = (float(v) for v in np.percentile(amap, [1.0, 99.9]))
    else:
        vmin, vmax = float(map_range[0]), float(map_range[1])
    big = to_original_grid(amap, orig.shape[:2])  # (H, W) float32
    img = overlay(orig, big, vmin, vmax)
    if pixel_threshold is not None:
        img = mask_overlay(img, predicted_mask(big, pixel_threshold), OUTLINE_RGB, alpha=0.0)
    if peak is not None:
        img = mark_peak(img, peak[0], peak[1])
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{png}: PNG encoding failed")
    atomic_write_bytes(png, buf.tobytes())
