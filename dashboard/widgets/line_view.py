"""Line page widgets: bring a results file back, the verdicts over time, the line's scores against
the evaluation's OK scores (with the drift warning), and the releases the line may run."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard.state import actor, sessions, workspace
from dashboard.widgets.charts import HEIGHT, NOK_COLOR, OK_COLOR, REVIEW_COLOR
from db.errors import PermissionDenied, ValidationError
from engine.errors import UserError
from engine.services.line import LineSummary, import_line_results, save_line_images

VERDICT_COLORS = {"OK": OK_COLOR, "REVIEW": REVIEW_COLOR, "NOK": NOK_COLOR, "ERROR": "#616161"}


def upload_ui(run_id: int) -> None:
    """A form: the results file (JSONL) and, optionally, the judged images."""
    with st.form(f"line_upload_{run_id}", border=True):
        results = st.file_uploader("Results file from the line (JSONL)", type=["jsonl", "json", "txt"],
                                   key=f"line_results_{run_id}")
        images = st.file_uploader("Images the line judged (optional: only REVIEW / NOK ones are kept; "
                                  "images or a zip)", accept_multiple_files=True, key=f"line_images_{run_id}")
        go_ = st.form_submit_button("Bring the results in", icon=":material/upload:", type="primary")
    if not go_:
        return
    if results is None:
        st.error("Choose the results file the line wrote (`prefilter-qa-line … --results FILE`).")
        return
    try:
        folder = save_line_images(workspace(), [(f.name, f.getvalue()) for f in images or []])
        report = import_line_results(workspace(), sessions(), run_id, results.getvalue().decode("utf-8", "replace"),
                                     actor=actor(), where=results.name, images_dir=folder)
    except (UserError, PermissionDenied, ValidationError) as exc:
        st.error(str(exc), icon=":material/error:")
        return
    st.success(f"Stored {report.stored} results ({report.already} were already here); {report.queued} images "
               "queued on the Review page.", icon=":material/check_circle:")
    if report.missing_images:
        st.warning(f"{len(report.missing_images)} REVIEW / NOK images were not found: upload them with the "
                   "results to review them.", icon=":material/warning:")
    if report.skipped:
        st.dataframe([{"reason": s["reason"]} for s in report.skipped[:200]], hide_index=True, width="stretch")


def counts_ui(summary: LineSummary) -> None:
    days = sorted(summary.counts)
    fig = go.Figure([go.Bar(x=days, y=[summary.counts[d][v] for d in days], name=v, marker_color=c)
                     for v, c in VERDICT_COLORS.items()])
    fig.update_layout(barmode="stack", height=HEIGHT, template="plotly_white", title="Verdicts per day",
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h"))
    st.plotly_chart(fig, width="stretch", key="line_counts")
    total = {v: sum(summary.counts[d][v] for d in days) for v in VERDICT_COLORS}
    n = max(sum(total.values()), 1)
    cols = st.columns(4)
    for col, (v, k) in zip(cols, total.items()):
        col.metric(v, k, f"{k / n:.1%} of parts", delta_color="off", border=True)


def drift_ui(summary: LineSummary) -> None:
    d = summary.drift
    if d is None:
        st.info("No scored parts yet (or the run's evaluation kept no OK scores to compare with).")
        return
    fig = go.Figure()
    both = np.concatenate([summary.reference, summary.scores])
    bins = dict(start=float(np.percentile(both, 0.5)), end=float(np.percentile(both, 99.5)),
                size=float(max(np.ptp(np.percentile(both, [0.5, 99.5])) / 40, 1e-12)))
    fig.add_trace(go.Histogram(x=summary.reference, name="evaluation OK parts", histnorm="probability",
                               marker_color=OK_COLOR, opacity=0.55, xbins=bins))
    fig.add_trace(go.Histogram(x=summary.scores, name="line parts", histnorm="probability",
                               marker_color="#1565c0", opacity=0.55, xbins=bins))
    for x, label in ((d["reference_median"], "OK median"), (d["current_median"], "line median")):
        fig.add_vline(x=x, line_dash="dash", annotation_text=label)
    fig.update_layout(barmode="overlay", height=HEIGHT, template="plotly_white", title="Scores on the line",
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h"), xaxis_title="score")
    st.plotly_chart(fig, width="stretch", key="line_scores")
    text = (f"The line's median score is {d['current_median']:.4g}, the evaluation's OK median "
            f"{d['reference_median']:.4g}: "
            f"a shift of {d['shift_of_spread']:+.0%} of the OK spread ({d['spread']:.4g}, 5th–95th percentile; "
            f"warning above {d['share']:.0%}).")
    if d["drift"]:
        st.warning("**Drift:** " + text + " Lighting, camera or parts have changed since the evaluation: check the "
                   "REVIEW images and consider retraining.", icon=":material/warning:")
    else:
        st.caption(text)

