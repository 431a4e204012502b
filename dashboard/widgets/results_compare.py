"""Two runs side by side, on the test images both were evaluated on (common image ids).

Ground truth for the comparison is today's labels and masks (after review corrections), the
same for both runs; images now unlabelled are left out. Each run keeps its own active
threshold for verdicts and its own heatmap colour range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from dashboard.state import sessions
from dashboard.widgets import charts
from dashboard.widgets.heatmap_view import detail_images, show_panels
from dashboard.widgets.results_data import ActiveThreshold, EvalData, load_evaluation, subset
from dashboard.widgets.results_metrics import metrics_table_ui, pixel_curves
from dashboard.widgets.run_picker import RunChoice
from db import datasets as dq
from db import decisions as tq
from db import masks as mq
from db import runs as rq
from engine.evaluation import decisions as D
from engine.evaluation.metrics import verdicts


def _verdicts(scores: np.ndarray, thr: ActiveThreshold | None) -> np.ndarray:
    if thr is None:
        return np.full(scores.size, "–", dtype=object)
    return verdicts(scores, thr.image, thr.band)


def compare_ui(run: RunChoice, data: EvalData, other: RunChoice, other_eval_id: int) -> None:
    odata = load_evaluation(other_eval_id)
    if odata is None:
        st.warning(f"Evaluation {other_eval_id} of run #{other.id} has not finished.")
        return
    with sessions().begin() as s:
        ids = rq.common_image_ids(s, [data.evaluation_id, odata.evaluation_id])
        truth = {img.id: (img.label, img.defect_type) for img in dq.images_by_ids(s, ids)}
        thr_a = ActiveThreshold.of(tq.active_threshold(s, run.id))
        thr_b = ActiveThreshold.of(tq.active_threshold(s, other.id))
    ids = [i for i in ids if truth.get(i, ("unknown",))[0] in ("ok", "nok")]
    if not ids:
        st.info(f"Runs #{run.id} and #{other.id} have no labelled test image in common.")
        return
    y = np.array([truth[i][0] == "nok" for i in ids], dtype=bool)
    types = [truth[i][1] for i in ids]
    ia, sa = subset(data, ids)
    ib, sb = subset(odata, ids)
    relabelled = int(np.sum(y != data.y_nok[ia]) + np.sum(y != odata.y_nok[ib]))
    name_a, name_b = f"Run #{run.id} ({run.model.upper()})", f"Run #{other.id} ({other.model.upper()})"
    st.markdown(f"**{len(ids)} test images both runs scored** (of {data.n} and {odata.n}); "
                "metrics recomputed on them with today's labels and masks.")
    if relabelled:
        st.caption(f"{relabelled} label(s) changed since an evaluation (review corrections) — "
                   "both runs are judged against the corrected labels.")
    ma = D.image_metrics(y, sa, types)
    mb = D.image_metrics(y, sb, types)
    for m, d, idx in ((ma, data, ia), (mb, odata, ib)):
        px = pixel_curves(d, idx) if d.metrics.get("pixel_roc") else None
        m["pixel_auroc"], m["aupro"] = (px["pixel_auroc"], px["aupro"]) if px else (None, None)
    metrics_table_ui({name_a: ma, name_b: mb}, skip=("OK-only threshold",))
    c1, c2 = st.columns(2)
    curves = [(name_a, ma), (name_b, mb)]
    if all(m["roc"] for _, m in curves):
        c1.plotly_chart(charts.roc_figure(
            [charts.Curve(n, m["roc"]["fpr"], m["roc"]["tpr"], m["roc"]["thresholds"]) for n, m in curves],
            title="Image ROC on the common images"), key="compare_roc")
    if all(m["pr"] for _, m in curves):
        c2.plotly_chart(charts.pr_figure(
            [charts.Curve(n, m["pr"]["recall"], m["pr"]["precision"], m["pr"]["thresholds"]) for n, m in curves],
            title="Precision-recall on the common images"), key="compare_pr")

    va, vb = _verdicts(sa, thr_a), _verdicts(sb, thr_b)
    names = [Path(data.names[i]).name for i in ia]
    table = pd.DataFrame({"image": names, "label": ["NOK" if v else "OK" for v in y],
                          f"score #{run.id}": sa, f"verdict #{run.id}": va,
                          f"score #{other.id}": sb, f"verdict #{other.id}": vb})
    differ = va != vb
    st.markdown(f"**Verdicts at each run's active threshold** — they differ on {int(differ.sum())} image(s)")
    order = np.lexsort((-np.maximum(sa, sb), ~differ))  # disagreements first, then by score
    st.dataframe(table.iloc[order], hide_index=True, width="stretch", height=240)

    st.markdown("**Heatmaps side by side**")
    pick = st.selectbox("Image", [int(k) for k in order], key=f"compare_img_{data.evaluation_id}_{odata.evaluation_id}",
                        format_func=lambda k: f"{names[k]} · {table['label'][k]} · "
                                              f"#{run.id}: {va[k]} / #{other.id}: {vb[k]}")
    alpha = st.slider("Heatmap opacity", 0.0, 1.0, 0.5, 0.05, key="compare_alpha")
    with sessions().begin() as s:
        mask = mq.current_mask(s, ids[pick])
        mask_path = mask.path if mask is not None else None
    pa = detail_images(data, int(ia[pick]), alpha=alpha, mask_path=mask_path, pixel_threshold=None)
    pb = detail_images(odata, int(ib[pick]), alpha=alpha, mask_path=None, pixel_threshold=None)
    show_panels({"Original": pa["Original"], f"Heatmap run #{run.id}": pa.get("Heatmap", ""),
                 f"Heatmap run #{other.id}": pb.get("Heatmap", ""), "Ground truth": pa.get("Ground truth", "")},
                {f"Heatmap run #{run.id}": f"score {sa[pick]:.4g} · {va[pick]}",
                 f"Heatmap run #{other.id}": f"score {sb[pick]:.4g} · {vb[pick]}"})
    st.caption("Each run's heatmap uses its own colour range (the scales of two models differ).")
