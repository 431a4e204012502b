"""Thresholds: choose where a run says NOK, see what it costs, save it for `predict`."""

from __future__ import annotations

import streamlit as st

from dashboard.widgets import threshold_state as S
from dashboard.widgets.release_ui import release_ui
from dashboard.widgets.run_picker import evaluated_run_ui
from dashboard.widgets.threshold_view import (
    charts_ui,
    conflict_ui,
    confusion_ui,
    history_ui,
    inputs_ui,
    live_ui,
    pixel_ui,
    save_ui,
    slider_range,
    suggestions_ui,
)

st.title("Thresholds")

_, run, data = evaluated_run_ui(key="thresholds", empty="No evaluated run yet: a threshold is chosen on a run's "
                                                         "test-image scores.")

active = S.load_active(run.id)
S.put(run.id, "slider_range", slider_range(data, active.image if active else None))
fallback = float(data.metrics.get("f1_threshold") or data.scores.mean())
S.init(run.id, active, fallback)
S.ensure_widgets(run.id)

st.markdown(f"**Active threshold** — {active.describe()}" if active else
            "**No threshold saved for this run yet.**")
conflict_ui(run.id, active, fallback)

st.subheader("Image threshold")
suggestions_ui(run.id, data)
inputs_ui(run.id, data)
left, right = st.columns([1, 1])
with left:
    counts = live_ui(run.id, data, active)
with right:
    confusion_ui(run.id, counts)
charts_ui(run.id, data)

st.subheader("Pixel threshold")
pixel_ui(run.id, data)

st.subheader("Save")
save_ui(run.id, data.evaluation_id)

st.subheader("History")
history_ui(run.id)

st.subheader("Release to the line")
release_ui(run.id, has_threshold=active is not None)
