"""Score new images with a stored run and its active threshold (`prefilter-qa predict`)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db import decisions as tq
from db import runs as rq
from engine.errors import UserError
from engine.intake.images import sha256_file
from engine.services.runs import trained_run
from engine.workspace import Workspace


def check_request(paths: list[Path], out_dir: Path | None) -> None:
    """Refuse, before any work, what can only end in a traceback: a path with a NUL byte (no
    file has one; PostgreSQL cannot even store it) and a heatmap folder that is a file."""
    for path in paths:
        if "\0" in str(path):
            raise UserError(f"path {str(path)!r}: contains a NUL byte, so no file can have this name")
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: is a file, not a folder; heatmaps need a folder (new or existing)")
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{out_dir}: cannot create the heatmap folder ({exc.strerror or exc})") from None


def predict_paths(ws: Workspace, sessions: sessionmaker[Session], run_id: int, paths: list[Path],
                  out_dir: Path | None = None, *, heatmaps: bool = True,
                  results_file: Path | None = None) -> list[dict[str, Any]]:
    """One result per path (unreadable files carry an error, the rest a score and verdict).

    `heatmaps=False` writes no overlay (faster on a line); `results_file` (.csv or .jsonl) gets
    one line per path appended, with the run, the threshold and the file's sha256."""
    with sessions.begin() as s:
        run = trained_run(s, run_id)
        t = tq.active_threshold(s, run_id)
        if t is None:
            raise UserError(f"run {run_id} has no threshold yet: evaluate it or set one on the Thresholds page")
        ev = rq.latest_evaluation(s, run_id)
        rng = (ev.metrics or {}).get("map_range") if ev else None
        srng = (ev.metrics or {}).get("score_map_range") if ev else None
        checkpoint, threshold_id = Path(run.checkpoint), t.id
        band = (t.review_low, t.review_high) if t.review_low is not None else None
        image_t, pixel_t = t.image_threshold, t.pixel_threshold
    check_request(paths, out_dir)
    from engine.evaluation.predict import append_results, check_results_file, predict_images  # torch

    if results_file is not None:
        check_results_file(results_file)

    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    out = out_dir or ws.run_dir(run_id) / "predictions" / stamp
    results = predict_images(
        checkpoint, paths, out, image_threshold=image_t, review_band=band, pixel_threshold=pixel_t,
        map_range=(rng["vmin"], rng["vmax"]) if rng else None, heatmaps=heatmaps,
        score_map_range=(srng["vmin"], srng["vmax"]) if srng else None,
    )
    rows = []
    for r in results:
        sha = None
        if r.error is None:
            try:
                sha = sha256_file(Path(r.path))
            except OSError:
                sha = None
        rows.append({"path": r.path, "score": r.score, "verdict": r.verdict, "heatmap": r.heatmap,
                     "error": r.error, "sha256": sha})
    with sessions.begin() as s:
        tq.add_predictions(s, run_id, threshold_id, rows)
    if results_file is not None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        append_results(results_file, [
            row | {"time": now, "run_id": run_id, "threshold_id": threshold_id, "score_map": r.score_map,
                   "peak_row": r.peak[0] if r.peak else None, "peak_col": r.peak[1] if r.peak else None}
            for row, r in zip(rows, results)])
    return [{k: v for k, v in row.items() if k != "sha256"} | {"score_map": r.score_map, "peak": r.peak}
            for row, r in zip(rows, results)]
