"""Results: how good is a run (or which of two is better), and where does it fail?"""

from __future__ import annotations

import streamlit as st

from dashboard.state import sessions
from dashboard.widgets.heatmap_view import detail_ui
from dashboard.widgets.results_compare import compare_ui
from dashboard.widgets.results_data import ActiveThreshold
from dashboard.widgets.results_gallery import filtered, filters_ui, gallery_section_ui, outcome_array
from dashboard.widgets.results_metrics import curves_ui, distribution_ui, metrics_table_ui, per_defect_ui
from dashboard.widgets.results_report import report_downloads_ui
from dashboard.widgets.run_picker import compare_picker_ui, evaluated_run_ui, evaluation_picker_ui
from db import decisions as tq
from db import masks as mq
from engine.evaluation import decisions as D

st.title("Results")

choices, run, data = evaluated_run_ui(key="results", empty="No evaluated run yet. Train a model first; its "
                                      "evaluation on the test images appears here.")
c3, c4 = st.columns([3, 2])
with c3:
    other = compare_picker_ui(choices, run, key="results_compare")
with c4:
    other_eval = evaluation_picker_ui(other, key="results_compare_eval") if other else None
with sessions().begin() as s:
    thr = ActiveThreshold.of(tq.active_threshold(s, run.id))
st.markdown(f"**Active threshold** — {thr.describe()}" if thr else "**No threshold set yet.**")
st.page_link("dashboard/pages/thresholds.py", label="Change it on the Thresholds page", icon=":material/tune:")
report_downloads_ui(run.id, data.evaluation_id)

tab_names = ["Metrics & curves", "Images"] + (["Compare runs"] if other else [])
tabs = st.tabs(tab_names)

with tabs[0]:
    metrics_table_ui({f"Run #{run.id} ({run.model.upper()})": data.metrics},
                     note=f"{data.n} test images of evaluation #{data.evaluation_id}. "
                          "AUROC interval: 95% stratified bootstrap.")
    if (chance := D.chance_warning(data.metrics)) is not None:
        st.warning(f"**Run #{run.id}:** {chance}", icon=":material/casino:")
    per_defect_ui(data, thr)
    distribution_ui(data, thr, key="results")
    curves_ui(data, thr, key="results")

with tabs[1]:
    outc = outcome_array(data, thr)
    outcome, defect, heat, lowest_first = filters_ui(data, outc, key="results_gallery")
    idx = filtered(data, outc, outcome, defect, lowest_first)
    i = gallery_section_ui(data, outc, idx, key="results_gallery", heat=heat)
    if i is not None:
        st.divider()
        img_id = int(data.image_ids[i])
        with sessions().begin() as s:
            mask = mq.current_mask(s, img_id)
            mask_path = mask.path if mask is not None else None
        kind = f"NOK ({data.defect_types[i] or 'unspecified'})" if data.y_nok[i] else "OK"
        st.subheader(data.names[i])
        st.markdown(f"Label when evaluated: **{kind}** · score **{data.scores[i]:.4g}** · "
                    f"outcome **{outc[i]}** · rank {i + 1} of {data.n} · image id {img_id}")
        st.caption(run.score_rule)
        detail_ui(data, i, mask_path=mask_path, pixel_threshold=thr.pixel if thr else None,
                  key="results_detail")

if other is not None and other_eval is not None:
    with tabs[2]:
        compare_ui(run, data, other, other_eval)
