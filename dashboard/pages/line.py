"""Line: what the production line decided with a released model — verdicts over time, its scores
against the evaluation's OK parts (drift), and bringing its results back for review."""

from __future__ import annotations

import streamlit as st

from dashboard.state import SELECTED_RUN, sessions
from dashboard.ui import page_header
from dashboard.widgets.line_view import counts_ui, drift_ui, upload_ui
from db import releases as relq
from db import runs as rq
from engine.services.line import line_summary

page_header("Line", "Releases score parts on the line with `prefilter-qa-line`; bring its results file back here "
            "to watch the verdicts, catch drift and review the doubtful parts.")
with sessions().begin() as s:
    released = sorted({r.run_id for r in relq.list_releases(s, limit=1000)} | set(relq.runs_with_line_results(s)),
                      reverse=True)
    labels = {r: f"Run #{r} · {rq.get_run(s, r).model.upper()} ({rq.get_run(s, r).preset})" for r in released}
if not released:
    st.info("No run has been released yet: release one on the Thresholds page.", icon=":material/info:")
    st.page_link("dashboard/pages/thresholds.py", label="Thresholds", icon=":material/tune:")
    st.stop()
preferred = st.session_state.get(SELECTED_RUN)
run_id = st.selectbox("Run", released, index=released.index(preferred) if preferred in released else 0,
                      format_func=labels.__getitem__, key="line_run")

with st.expander("Bring line results in", icon=":material/upload:"):
    upload_ui(run_id)
with sessions().begin() as s:
    summary = line_summary(s, run_id)
if not summary.counts:
    st.info("No line results for this run yet.", icon=":material/info:")
    st.stop()
counts_ui(summary)
drift_ui(summary)
st.page_link("dashboard/pages/review.py", label="Review the REVIEW and NOK parts", icon=":material/fact_check:",
             query_params={"run": str(run_id)})
