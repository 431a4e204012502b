"""Results: the metrics table, per-defect table, ROC / PR curves, histogram and confusion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from dashboard.state import sessions, workspace
from dashboard.widgets import charts
from dashboard.widgets.heatmap_view import load_map
from dashboard.widgets.results_data import ActiveThreshold, EvalData
from db import masks as mq
from engine.config import default
from engine.evaluation import decisions as D
from engine.intake.images import read_mask, resize_mask

ROWS = (  # (label, formatter) in table order
    ("Image AUROC (95% interval)", lambda m: _auroc(m.get("image_auroc"), m.get("image_auroc_ci95"))),
    ("Pixel AUROC", lambda m: _num(m.get("pixel_auroc"))),
    ("AUPRO (to FPR 0.3)", lambda m: _num(m.get("aupro"))),
    ("F1-max (at threshold)", lambda m: _f1(m.get("f1_max"), m.get("f1_threshold"))),
    ("False-reject rate at zero escapes", lambda m: _pct(m.get("fpr_at_full_recall"))),
    ("OK-only threshold", lambda m: _ok_only(m)),
    ("Test images (OK / NOK)", lambda m: f"{m.get('n_ok', '–')} / {m.get('n_nok', '–')}"),
)


def _num(v: Any, d: int = 3) -> str:
    return "–" if v is None else f"{v:.{d}f}"


def _pct(v: Any) -> str:
    return "–" if v is None else f"{v:.1%}"


def _auroc(v: Any, ci: Any) -> str:
    if v is None:
        return "–"
    return f"{v:.3f} ({ci[0]:.3f} – {ci[1]:.3f})" if ci else f"{v:.3f}"


def _f1(v: Any, t: Any) -> str:
    return "–" if v is None else f"{v:.3f} (at {t:.4g})"


def _ok_only(m: dict[str, Any]) -> str:
    v = m.get("ok_only_threshold")
    if v is None:
        return "–"
    return f"{v:.4g} (target FRR {m.get('target_frr', default('target_frr')):.1%}, from {m.get('ok_only_source') or '?'})"


def metrics_table(columns: dict[str, dict[str, Any]], skip: tuple[str, ...] = ()) -> pd.DataFrame:
    """One column per run (label -> metrics dict), one row per headline metric."""
    rows = [(label, fmt) for label, fmt in ROWS if label not in skip]
    return pd.DataFrame({name: [fmt(m) for _, fmt in rows] for name, m in columns.items()},
                        index=[label for label, _ in rows])


def metrics_table_ui(columns: dict[str, dict[str, Any]], note: str | None = None,
                     skip: tuple[str, ...] = ()) -> None:
    st.dataframe(metrics_table(columns, skip), width="stretch")
    if note:
        st.caption(note)


def per_defect_ui(data: EvalData, thr: ActiveThreshold | None) -> None:
    if thr is None or not data.y_nok.any():
        return
    rows = D.per_defect_at(data.y_nok, data.scores, data.defect_types, thr.image, thr.band)
    if not rows:
        return
    st.markdown("**Per defect type** (each type against all OK images; counts at the active threshold)")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "image AUROC": st.column_config.NumberColumn(format="%.3f"),
        "mean score": st.column_config.NumberColumn(format="%.4g")})


@st.cache_data(show_spinner="Computing pixel curves from the stored heatmaps…", max_entries=16)
def _pixel_curves(home: str, evaluation_id: int, heatmaps: tuple[str | None, ...],
                  masks: tuple[str | None, ...], roi: str | None) -> dict | None:
    pairs = [(h, m) for h, m in zip(heatmaps, masks) if h and Path(h).exists()]
    if not pairs:
        return None
    shape = load_map(pairs[0][0]).shape  # type: ignore[union-attr]
    roi_arr = resize_mask(read_mask(Path(roi)), shape) if roi else None

    def load() -> Any:
        for h, m in pairs:
            amap = load_map(h)
            yield amap, (resize_mask(read_mask(Path(m)), amap.shape) if m else None)

    return D.pixel_curves(load, roi_arr)


def pixel_curves(data: EvalData, idx: np.ndarray | None = None) -> dict | None:
    """Pixel metrics and curves of (a subset of) an evaluation, with today's masks and ROI."""
    idx = np.arange(data.n) if idx is None else idx
    ids = [int(data.image_ids[i]) for i in idx]
    with sessions().begin() as s:
        masks = mq.current_masks(s, ids)
        roi = mq.current_roi(s, data.dataset_id)
        mask_paths = tuple((masks[i].path if i in masks and data.y_nok[data.index_of[i]] else None)
                           for i in ids)
        roi_path = roi.path if roi is not None else None
    return _pixel_curves(str(workspace().home), data.evaluation_id,
                         tuple(data.heatmaps[i] for i in idx), mask_paths, roi_path)


def _pixel_pr(data: EvalData) -> tuple[dict | None, str | None]:
    m = data.metrics
    if m.get("pixel_pr"):
        return m["pixel_pr"], None
    if m.get("pixel_roc") and m.get("pixel_n_pos") and m.get("pixel_n_neg"):
        return D.pr_from_roc(m["pixel_roc"], int(m["pixel_n_pos"]), int(m["pixel_n_neg"])), None
    if not m.get("pixel_roc"):
        return None, None
    cur = pixel_curves(data)
    return (cur["pr"] if cur else None), "recomputed from the stored heatmaps and today's masks"


def curves_ui(data: EvalData, thr: ActiveThreshold | None, key: str) -> None:
    """Image and pixel ROC and precision-recall, 2 x 2."""
    m = data.metrics
    point = D.operating_point(data.y_nok, data.scores, thr.image) if thr else None
    c1, c2 = st.columns(2)
    roc, pr = m.get("roc"), m.get("pr")
    with c1:
        if roc:
            fig = charts.roc_figure([charts.Curve("image", roc["fpr"], roc["tpr"], roc["thresholds"])],
                                    title="Image ROC", point=point, point_label="active threshold")
            st.plotly_chart(fig, key=f"{key}_img_roc")
        else:
            st.info("Image ROC needs both OK and NOK test images.")
    with c2:
        if pr:
            pr_point = None
            if point is not None and thr is not None:
                c = D.live_counts(data.y_nok, data.scores, thr.image)
                caught = c["tp"] + c["fp"]
                pr_point = (point[1], c["tp"] / caught if caught else 1.0)
            fig = charts.pr_figure([charts.Curve("image", pr["recall"], pr["precision"], pr["thresholds"])],
                                   title="Image precision-recall", point=pr_point)
            st.plotly_chart(fig, key=f"{key}_img_pr")
        else:
            st.info("Image precision-recall needs NOK test images.")
    c3, c4 = st.columns(2)
    with c3:
        proc = m.get("pixel_roc")
        if proc:
            fig = charts.roc_figure([charts.Curve("pixel", proc["fpr"], proc["tpr"], proc.get("thresholds"))],
                                    title="Pixel ROC", markers=False, unit="pixels")
            st.plotly_chart(fig, key=f"{key}_px_roc")
        else:
            st.info("Pixel curves need NOK test images with masks.")
    with c4:
        ppr, note = _pixel_pr(data) if proc else (None, None)
        if ppr:
            fig = charts.pr_figure([charts.Curve("pixel", ppr["recall"], ppr["precision"], ppr.get("thresholds"))],
                                   title="Pixel precision-recall", markers=False, unit="pixels")
            st.plotly_chart(fig, key=f"{key}_px_pr")
            if note:
                st.caption(f"Pixel precision-recall {note}.")
    if m.get("resolution_note"):
        st.caption(f"Pixel metrics: {m['resolution_note']}; {m.get('aupro_note', '')}.")


def distribution_ui(data: EvalData, thr: ActiveThreshold | None, key: str) -> None:
    """Score histogram OK vs NOK with the active threshold and band; confusion next to it."""
    edges = D.score_bins(data.scores, data.y_nok, data.holdout_scores(), thr.image if thr else None)
    ok, nok = D.histogram_counts(data.y_nok, data.scores, edges)
    c1, c2 = st.columns([3, 2])
    with c1:
        fig = charts.histogram_figure(ok, nok, edges, threshold=thr.image if thr else None,
                                      band=thr.band if thr else None)
        st.plotly_chart(fig, key=f"{key}_hist")
        st.caption("Bar width: a tenth of the OK scores' spread, so the overlap near the threshold shows; "
                   "the outer bars hold every score beyond them.")
    with c2:
        if thr is None:
            st.info("No threshold set for this run yet.")
            return
        counts = D.live_counts(data.y_nok, data.scores, thr.image, thr.band)
        st.plotly_chart(charts.confusion_figure(counts, band=thr.band is not None,
                                                title="Confusion at the active threshold"),
                        key=f"{key}_conf")
        st.caption(f"Escapes {counts['fn']} of {counts['n_nok']} NOK · false rejects {counts['fp']} "
                   f"of {counts['n_ok']} OK" + (f" · {counts['review_count']} to review" if thr.band else ""))
