"""Review: decide what each false positive, false negative and review-band image really is, then retrain."""

from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard.state import sessions
from dashboard.widgets.heatmap_view import detail_ui
from dashboard.widgets.results_data import ActiveThreshold
from dashboard.widgets.results_gallery import gallery_section_ui, outcome_array, selected_key
from dashboard.widgets.review_actions import current_images, marks
from dashboard.widgets.review_queues import QUEUES, QueueContext, outcome_set, queue
from dashboard.widgets.review_view import actions_ui, follow_requests, retrain_ui, show_flash
from dashboard.widgets.run_picker import evaluated_run_ui
from db import decisions as tq
from db import masks as mq

follow_requests()
st.title("Review")
st.caption("False positives (OK parts the run rejected), false negatives (defects it passed) and the parts in "
           "the review band at the run's active threshold. Record what each one really is; corrections feed "
           "the next training.")

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
ctx = QueueContext(run.id, data, thr, outc)
picked = {q.key: q.pick(ctx) for q in QUEUES if q.render is None}
flagged = sorted({int(data.image_ids[i]) for idx in picked.values() for i in idx})
with sessions().begin() as s:
    done = marks(s, flagged)
    now = current_images(s, flagged)
reviewed = {k: sum(1 for i in idx if int(data.image_ids[i]) in done) for k, idx in picked.items()}
labels = {q.key: q.title + (f" ({len(picked[q.key])}, {reviewed[q.key]} reviewed)" if q.key in picked else "")
          for q in QUEUES}
c1, c2 = st.columns([5, 1], vertical_alignment="bottom")
kind = c1.radio("Queue", list(labels), format_func=labels.__getitem__, horizontal=True, key="review_kind")
hide = c2.toggle("Hide reviewed", key="review_hide")
q = queue(kind)
if q.render is not None:  # a queue of another source draws itself
    q.render(ctx)
idx = picked.get(kind, np.zeros(0, np.int64))
if hide:
    idx = np.array([i for i in idx if int(data.image_ids[i]) not in done], dtype=np.int64)
order = [int(data.image_ids[i]) for i in idx]
key = f"review_{kind}"
if q.render is None and not len(picked[kind]):
    st.info(q.empty, icon=":material/inbox:")
i = gallery_section_ui(data, outc, idx, key=key, heat=True, marks={k: m.text() for k, m in done.items()}
                       ) if kind in picked and len(picked[kind]) else None
if i is not None:
    st.divider()
    img_id = int(data.image_ids[i])
    st.subheader(data.names[i])
    st.caption(run.score_rule)
    actions_ui(data, i, outcome_set(str(outc[i]), bool(data.y_nok[i])), run_id=run.id, order=order,
               sel_key=selected_key(key, data), now=now.get(img_id), mark=done.get(img_id), question=q.question)
    with sessions().begin() as s:
        mask = mq.current_mask(s, img_id)
        mask_path = mask.path if mask is not None else None
    detail_ui(data, i, mask_path=mask_path, pixel_threshold=thr.pixel, key="review_detail")

st.divider()
st.subheader("Retrain with corrections")
retrain_ui(run.id, n_reviews)
