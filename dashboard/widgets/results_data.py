"""An evaluation's arrays, loaded once per evaluation id (cached) for Results/Thresholds/Review.

An evaluation never changes once it succeeded, so its scores, labels-as-evaluated and heatmap
paths are cached by (workspace, evaluation id). What does change (current labels, reviews,
masks, the active threshold) is read fresh by the pages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from dashboard.state import sessions, workspace
from db import runs as rq
from db.models import JobStatus
from engine.evaluation.heatmaps import score_map_rel


@dataclass(frozen=True)
class EvalData:
    """One evaluation as arrays, highest score first; index i is one test image."""

    evaluation_id: int
    run_id: int
    dataset_id: int
    metrics: dict[str, Any]
    image_ids: np.ndarray  # (N,) int
    y_nok: np.ndarray  # (N,) bool, label as evaluated
    scores: np.ndarray  # (N,) float64
    defect_types: tuple[str | None, ...]
    heatmaps: tuple[str | None, ...]  # absolute .npy paths
    paths: tuple[str, ...]
    names: tuple[str, ...]  # path relative to the dataset root
    sha256: tuple[str, ...]
    sizes_hw: np.ndarray  # (N, 2) original (H, W)
    index_of: dict[int, int] = field(default_factory=dict)  # image id -> i
    score_maps: tuple[str | None, ...] = ()  # absolute .npy paths of the score's own map (DFR default)
    border_margin: int = 0  # pixels along the border the score ignores (where its peak can't be)

    @property
    def n(self) -> int:
        return int(self.scores.size)

    @property
    def map_range(self) -> tuple[float, float]:
        """Fixed colour range of every heatmap of this evaluation (same colour = same value)."""
        r = self.metrics.get("map_range") or {}
        lo, hi = r.get("vmin"), r.get("vmax")
        if lo is None or hi is None:
            return 0.0, 1.0
        return float(lo), float(hi)

    @property
    def score_map_range(self) -> tuple[float, float] | None:
        """Colour range of the score maps (their values are larger than the heatmap's)."""
        r = self.metrics.get("score_map_range") or {}
        return (float(r["vmin"]), float(r["vmax"])) if r.get("vmin") is not None else None

    def holdout_scores(self) -> np.ndarray | None:
        """OK scores of the held-out training images, if the evaluation stored them."""
        h = self.metrics.get("holdout_scores")
        return np.asarray(h, np.float64) if h else None


@st.cache_data(show_spinner=False, max_entries=32)
def _load(home: str, evaluation_id: int) -> EvalData | None:
    with sessions().begin() as s:
        ev = rq.get_evaluation(s, evaluation_id)
        if ev.status != JobStatus.SUCCEEDED:
            return None
        rows = rq.evaluation_images(s, evaluation_id)
        root = Path(ev.directory or "")
        config = rq.get_run(s, ev.run_id).config or {}
        has_score_maps = bool((ev.metrics or {}).get("score_maps"))
        return EvalData(
            evaluation_id=ev.id, run_id=ev.run_id, dataset_id=ev.dataset_id, metrics=dict(ev.metrics),
            image_ids=np.array([sc.image_id for sc, _ in rows], dtype=np.int64),
            y_nok=np.array([sc.label == "nok" for sc, _ in rows], dtype=bool),
            scores=np.array([sc.score for sc, _ in rows], dtype=np.float64),
            defect_types=tuple(sc.defect_type for sc, _ in rows),
            heatmaps=tuple(str(root / sc.heatmap) if sc.heatmap else None for sc, _ in rows),
            paths=tuple(img.path for _, img in rows),
            names=tuple(img.rel_path for _, img in rows),
            sha256=tuple(img.sha256 for _, img in rows),
            sizes_hw=np.array([(img.height, img.width) for _, img in rows], dtype=np.int64).reshape(-1, 2),
            index_of={sc.image_id: i for i, (sc, _) in enumerate(rows)},
            score_maps=tuple(str(root / score_map_rel(sc.heatmap)) if sc.heatmap and has_score_maps else None
                             for sc, _ in rows),
            border_margin=int(config.get("border_margin") or 0),
        )


def load_evaluation(evaluation_id: int) -> EvalData | None:
    """The cached arrays of a succeeded evaluation (None while it is not finished)."""
    return _load(str(workspace().home), int(evaluation_id))


def subset(data: EvalData, image_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(indices into `data`, scores) of the given images, in the order given."""
    idx = np.array([data.index_of[i] for i in image_ids], dtype=np.int64)
    return idx, data.scores[idx]


RULE_NAMES = {"manual": "set by hand", "roc": "ROC click", "histogram": "histogram click",
              "f1_max": "F1-max", "zero_escape": "zero escapes", "ok_only": "OK-only"}


@dataclass(frozen=True)
class ActiveThreshold:
    """The run's active threshold as plain values (what `predict` uses right now)."""

    id: int
    image: float
    pixel: float | None
    band: tuple[float, float] | None
    rule: str | None
    set_by: str
    at: str
    note: str | None

    @classmethod
    def of(cls, t: Any) -> "ActiveThreshold | None":
        if t is None:
            return None
        band = (t.review_low, t.review_high) if t.review_low is not None else None
        return cls(t.id, t.image_threshold, t.pixel_threshold, band, t.rule, t.set_by,
                   f"{t.created_at.astimezone():%Y-%m-%d %H:%M:%S}", t.note)

    def describe(self) -> str:
        band = f" · review band {self.band[0]:.4g} – {self.band[1]:.4g}" if self.band else ""
        px = f" · pixel {self.pixel:.4g}" if self.pixel is not None else ""
        rule = RULE_NAMES.get(self.rule or "manual", self.rule)
        return (f"image threshold **{self.image:.4g}**{px}{band} · {rule}"
                f" · set by {self.set_by} at {self.at}")
