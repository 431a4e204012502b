"""An evaluation as a report: one row per test image (CSV) and the facts of the PDF.

Plain data in, files out (no database, no torch): `engine.services.reports` gathers a run's
evaluation, threshold and history from the database into a `ReportInput`; `report_rows` applies
the one verdict rule (`engine.evaluation.metrics.verdicts`) and counts mask and predicted-defect
pixels at the original image resolution, as the dashboard's detail view shows them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import InputFileError
from engine.evaluation.decisions import outcomes
from engine.evaluation.heatmaps import load_heatmap, predicted_mask, to_original_grid
from engine.evaluation.metrics import verdicts
from engine.intake.images import read_mask

CSV_COLUMNS = ("image_id", "path", "label", "defect_type", "score", "verdict", "outcome", "threshold",
               "review_low", "review_high", "mask_pixels", "pixel_threshold", "predicted_pixels",
               "width", "height", "heatmap", "score_map")


@dataclass(frozen=True)
class ReportImage:
    """One test image of the evaluation, with its files (absolute paths; None when absent)."""

    image_id: int
    path: str
    name: str  # path relative to the dataset root
    label: str  # as evaluated: "ok" | "nok"
    defect_type: str | None
    score: float
    width: int
    height: int
    heatmap: str | None
    score_map: str | None
    mask: str | None  # the mask version the evaluation compared with


@dataclass(frozen=True)
class ThresholdRow:
    id: int | None  # None: the evaluation's automatic suggestion, never saved
    image: float
    pixel: float | None
    band: tuple[float, float] | None
    rule: str | None
    set_by: str
    at: str
    note: str | None


@dataclass(frozen=True)
class ReportInput:
    """Everything a report says; built by the service, rendered by `write_csv` / `write_pdf`."""

    run: dict[str, Any]  # id, model, preset, status, created_by, created_at, checkpoint, parent_run_id
    dataset: dict[str, Any]  # name, root, snapshot counts (train, holdout, test, masks, roi)
    evaluation_id: int
    evaluated_at: str
    metrics: dict[str, Any]
    threshold: ThresholdRow  # the active one (what `predict` uses)
    history: list[ThresholdRow]  # newest first
    images: list[ReportImage]  # highest score first
    score_rule: str
    border_margin: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def y_nok(self) -> np.ndarray:
        return np.array([im.label == "nok" for im in self.images], dtype=bool)

    @property
    def scores(self) -> np.ndarray:
        return np.array([im.score for im in self.images], dtype=np.float64)

    def map_range(self, key: str = "map_range") -> tuple[float, float] | None:
        r = self.metrics.get(key) or {}
        return (float(r["vmin"]), float(r["vmax"])) if r.get("vmin") is not None else None


def _pixels(im: ReportImage, pixel_threshold: float | None) -> tuple[int | None, int | None]:
    """(mask pixels, predicted-defect pixels) on the original grid; None where not known."""
    mask_px = None
    if im.mask:
        try:
            mask_px = int(np.count_nonzero(read_mask(Path(im.mask))))
        except InputFileError:
            mask_px = None
    pred_px = None
    if pixel_threshold is not None and im.heatmap:
        try:
            amap = load_heatmap(im.heatmap)  # (S, S)
        except (OSError, ValueError):
            amap = None
        if amap is not None:
            big = to_original_grid(amap, (im.height, im.width))
            pred_px = int(np.count_nonzero(predicted_mask(big, pixel_threshold)))
    return mask_px, pred_px


def report_rows(inp: ReportInput) -> list[dict[str, Any]]:
    """One dict per test image (CSV_COLUMNS), highest score first."""
    t = inp.threshold
    verdict = verdicts(inp.scores, t.image, t.band) if inp.images else np.array([])
    outcome = outcomes(inp.y_nok, inp.scores, t.image, t.band) if inp.images else np.array([])
    rows = []
    for k, im in enumerate(inp.images):
        mask_px, pred_px = _pixels(im, t.pixel)
        rows.append({
            "image_id": im.image_id, "path": im.path, "label": im.label, "defect_type": im.defect_type or "",
            "score": repr(float(im.score)), "verdict": str(verdict[k]), "outcome": str(outcome[k]),
            "threshold": repr(float(t.image)), "review_low": "" if t.band is None else repr(t.band[0]),
            "review_high": "" if t.band is None else repr(t.band[1]),
            "mask_pixels": "" if mask_px is None else mask_px,
            "pixel_threshold": "" if t.pixel is None else repr(float(t.pixel)),
            "predicted_pixels": "" if pred_px is None else pred_px,
            "width": im.width, "height": im.height, "heatmap": im.heatmap or "", "score_map": im.score_map or "",
        })
    return rows


def csv_bytes(inp: ReportInput) -> bytes:
    """The CSV report (UTF-8, header + one row per test image)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(report_rows(inp))
    return buf.getvalue().encode("utf-8")


def worst(inp: ReportInput, outcome: str, n: int = 3) -> list[int]:
    """Indices of the worst false rejects ("FP": highest OK scores) or escapes ("FN": lowest
    NOK scores) at the active threshold."""
    if not inp.images:
        return []
    outc = outcomes(inp.y_nok, inp.scores, inp.threshold.image, inp.threshold.band)
    idx = np.flatnonzero(outc == outcome)
    order = idx[np.argsort(-inp.scores[idx] if outcome == "FP" else inp.scores[idx], kind="stable")]
    return [int(i) for i in order[:n]]


def fmt(v: Any, digits: int = 4) -> str:
    """A number for a report cell ("–" when missing)."""
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def metric_lines(m: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) of the headline metrics, with the AUROC's bootstrap interval."""
    ci = m.get("image_auroc_ci95")
    ci_txt = f" (95% CI {ci[0]:.3f} – {ci[1]:.3f})" if ci and None not in ci else ""
    return [
        ("Test images", f"{m.get('n_ok', 0)} OK, {m.get('n_nok', 0)} NOK; {m.get('n_holdout', 0)} held-out OK"),
        ("Image AUROC", (f"{m['image_auroc']:.4f}" if m.get("image_auroc") is not None else "–") + ci_txt),
        ("Pixel AUROC", fmt(m.get("pixel_auroc"))),
        ("AUPRO (FPR <= 0.3)", fmt(m.get("aupro"))),
        ("F1-max (threshold)", f"{fmt(m.get('f1_max'), 3)} ({fmt(m.get('f1_threshold'))})"),
        ("FRR at zero escapes", fmt(m.get("fpr_at_full_recall"), 3)),
        (f"OK-only threshold @ {float(m.get('target_frr') or 0):.1%} FRR", fmt(m.get("ok_only_threshold"))),
    ]


def history_lines(rows: Sequence[ThresholdRow]) -> list[list[str]]:
    """Threshold history as table cells (newest first)."""
    return [[("#" + str(r.id)) if r.id is not None else "auto", fmt(r.image, 6), fmt(r.pixel),
             f"{r.band[0]:.4g} – {r.band[1]:.4g}" if r.band else "", r.rule or "manual", r.set_by, r.at,
             (r.note or "")[:60]] for r in rows]
