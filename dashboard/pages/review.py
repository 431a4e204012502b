"""Review: decide what each false positive / false negative really is, then retrain."""

from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard.state import sessions
from dashboard.widgets.heatmap_view import detail_ui
from dashboard.widgets.results_data import ActiveThreshold
from dashboard.widgets.results_gallery import gallery_section_ui, outcome_array, selected_key
from dashboard.widgets.review_actions import current_images, marks
from dashboard.widgets.review_view import actions_ui, follow_requests, retrain_ui, show_flash
from dashboard.widgets.run_picker import evaluated_run_ui
from db import decisions as tq
from db import masks as mq

follow_requests()
st.title("Review")
st.caption("False positives (OK parts the run rejected) and false negatives (defects it passed) at the "
           "run's active threshold. Record what each one really is; corrections feed the next training.")

_, run, data = evaluated_run_ui(key="review", empty="No evaluated run yet.")
with sessions().begin() as s:
    thr = ActiveThreshold.of(tq.active_threshold(s, run.id))
    n_reviews = len(tq.reviews_for_run(s, run.id))
if thr is None:
    st.info("This run has no threshold yet.")
    st.stop()
st.markdown(f"**Active threshold** — {thr.describe()}")
show_flash()

outc = outcome_array(data, thr)
flagged = [int(data.image_ids[i]) for i in np.flatnonzero((outc == "FP") | (outc == "FN"))]
with sessions().begin() as s:
    done = marks(s, flagged)
    now = current_images(s, flagged)
n_fp, n_fn = int(np.sum(outc == "FP")), int(np.sum(outc == "FN"))
reviewed = {o: sum(1 for i in np.flatnonzero(outc == o) if int(data.image_ids[i]) in done) for o in ("FP", "FN")}
labels = {"FP": f"False positives — OK parts rejected ({n_fp}, {reviewed['FP']} reviewed)",
          "FN": f"False negatives — defects passed ({n_fn}, {reviewed['FN']} reviewed)"}
c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
kind = c1.radio("Show", ["FP", "FN"], format_func=labels.__getitem__, horizontal=True, key="review_kind")
hide = c2.toggle("Hide reviewed", key="review_hide")
idx = np.flatnonzero(outc == kind)
if hide:
    idx = np.array([i for i in idx if int(data.image_ids[i]) not in done], dtype=np.int64)
order = [int(data.image_ids[i]) for i in idx]
key = f"review_{kind}"
i = gallery_section_ui(data, outc, idx, key=key, heat=True, marks={k: m.text() for k, m in done.items()})
if i is not None:
    st.divider()
    img_id = int(data.image_ids[i])
    st.subheader(data.names[i])
    st.caption(run.score_rule)
    actions_ui(data, i, str(outc[i]), run_id=run.id, order=order, sel_key=selected_key(key, data),
               now=now.get(img_id), mark=done.get(img_id))
    with sessions().begin() as s:
        mask = mq.current_mask(s, img_id)
        mask_path = mask.path if mask is not None else None
    detail_ui(data, i, mask_path=mask_path, pixel_threshold=thr.pixel, key="review_detail")

st.divider()
st.subheader("Retrain with corrections")
retrain_ui(run.id, n_reviews)
