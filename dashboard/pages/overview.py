"""Overview: the workflow, datasets, recent runs with their headline metrics, active jobs."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from dashboard.state import SELECTED_RUN, sessions
from dashboard.ui import fmt_auroc, fmt_num, fmt_when, page_header, show_flashes
from dashboard.widgets.jobs_table import job_title, progress_ui
from db import datasets as dq
from db import jobs as jq
from db import runs as rq
from engine.evaluation import decisions as D
from engine.services.views import run_dict

RECENT_RUNS = 10
STEPS = [
    ("dashboard/pages/datasets.py", ":material/photo_library:", "Datasets",
     "import a folder or upload images; check labels (OK / NOK) and which images are for training."),
    ("dashboard/pages/annotate.py", ":material/brush:", "Annotate",
     "draw or correct the defect masks of NOK test images (they make pixel metrics possible)."),
    ("dashboard/pages/train.py", ":material/model_training:", "Train",
     "pick a dataset and a model (DFR or the CBAM autoencoder) and launch a training job."),
    ("dashboard/pages/jobs.py", ":material/pending_actions:", "Jobs",
     "follow training and evaluation while they run; cancel or retry."),
    ("dashboard/pages/results.py", ":material/insights:", "Results",
     "ROC curves, score histograms and heatmaps of every test image."),
    ("dashboard/pages/thresholds.py", ":material/tune:", "Thresholds",
     "choose and save the decision threshold that `prefilter-qa predict` uses."),
    ("dashboard/pages/review.py", ":material/fact_check:", "Review",
     "go through false positives and missed defects, correct labels, then retrain with the corrections."),
]

page_header("Overview", "Unsupervised visual inspection: models learn from OK parts only and flag what "
            "looks different.")
show_flashes()
factory = sessions()
with factory.begin() as s:
    counts = dq.dataset_counts(s)
    names = {c.id: c.name for c in counts}
    runs = [run_dict(s, r) for r in rq.list_runs(s, limit=RECENT_RUNS)]
    n_active = len(jq.active_jobs(s))
    first = [(j, r, d) for j, r, d in jq.jobs_with_context(s, active_only=True, limit=5) if j.kind == "train"]

m1, m2, m3, m4 = st.columns(4)
m1.metric("Datasets", len(counts), border=True)
m2.metric("Images", sum(c.total for c in counts), border=True)
m3.metric("Runs", len(runs) if len(runs) < RECENT_RUNS else f"{RECENT_RUNS}+", border=True)
m4.metric("Active jobs", n_active, border=True)

if first and not any(r["metrics"] for r in runs):
    job, run, dataset = first[-1]
    st.info(f"**The first training is running** — job #{job.id}, {run.model.upper() if run else ''} on "
            f"{dataset or 'the dataset'!r}. Results and Thresholds fill in when it has finished "
            "(a few minutes on a CPU); follow it below or on Jobs.", icon=":material/hourglass_top:")

with st.expander("How it works", icon=":material/route:", expanded=not runs):
    st.markdown("From photos to a stored inspection model, in this order — and round again after "
                "each review:")
    for i, (path, icon, title, text) in enumerate(STEPS, 1):
        c1, c2 = st.columns([1, 4], vertical_alignment="center")
        with c1:
            st.page_link(path, label=f"{i}. {title}", icon=icon)
        c2.markdown(text)
    if not counts:
        st.info("No dataset yet: run `prefilter-qa demo` for a synthetic one, or import your own "
                "on the Datasets page.", icon=":material/info:")

st.subheader("Datasets", anchor=False)
if counts:
    st.dataframe([{"Dataset": c.name, "Train OK": c.train_ok, "Test OK": c.test_ok, "Test NOK": c.test_nok,
                   "Masks": c.masks, "Unlabelled": c.unlabelled, "Images": c.total} for c in counts],
                 hide_index=True, width="stretch")
else:
    st.caption("None yet.")

st.subheader("Recent runs", anchor=False)
if not runs:
    st.caption("No model trained yet.")
else:
    rows = []
    for r in runs:
        m, t = r["metrics"] or {}, r["threshold"] or {}
        rows.append({
            "Run": r["id"], "Dataset": names.get(r["dataset_id"], "?"), "Model": r["model"].upper(),
            "Preset": r["preset"], "Status": r["status"],
            "Image AUROC (95% CI)": fmt_auroc(m.get("image_auroc"), m.get("image_auroc_ci95")),
            "Pixel AUROC": fmt_num(m.get("pixel_auroc")),
            "Threshold": f"{fmt_num(t.get('image'))} ({t.get('set_by')})" if t else "–",
            "Retrains": f"run {r['parent_run_id']}" if r["parent_run_id"] else "",
            "By": r["created_by"], "Created": fmt_when(datetime.fromisoformat(r["created_at"])),
        })
    for r in runs:
        if (chance := D.chance_warning(r["metrics"])) is not None:
            st.warning(f"**Run {r['id']} ({r['model'].upper()}, {r['preset']}):** {chance}", icon=":material/casino:")
    picked = st.dataframe(rows, hide_index=True, width="stretch", on_select="rerun",
                          selection_mode="single-row", key="overview_runs",
                          column_config={"Run": st.column_config.NumberColumn(format="%d")})
    st.caption("Select a run to open its results. Each run's AUROC is measured on its own test images (the "
               "test split when it was trained): after relabelling or a retrain two rows may not be comparable — "
               "Results → Compare runs compares two runs on the test images both scored.")
    if picked and picked.selection.rows:
        st.session_state[SELECTED_RUN] = rows[picked.selection.rows[0]]["Run"]
        st.switch_page("dashboard/pages/results.py", query_params={"run": str(st.session_state[SELECTED_RUN])})


@st.fragment(run_every=2.0 if n_active else None)
def active_jobs() -> None:
    with factory.begin() as s:
        entries = jq.jobs_with_context(s, active_only=True, limit=20)
    st.subheader(f"Running and queued jobs ({len(entries)})", anchor=False)
    if n_active and not entries:
        st.rerun()  # all finished: refresh runs and stop polling
    if not entries:
        st.caption("Nothing is running.")
    for job, run, dataset in reversed(entries):
        st.markdown(f"**{job_title(job, run, dataset)}** · :gray[queued {fmt_when(job.created_at)} "
                    f"by {job.created_by}]")
        progress_ui(job)
    st.page_link("dashboard/pages/jobs.py", label="All jobs", icon=":material/pending_actions:")


active_jobs()
