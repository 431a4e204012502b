"""Train: choose dataset, model family and preset, adjust parameters, launch a training job."""

from __future__ import annotations

import streamlit as st

from dashboard.state import SELECTED_JOB, actor, can, keep_worker_running, role_note, sessions
from dashboard.ui import MODEL_NAMES, fmt_auroc, page_header
from dashboard.widgets.config_form import config_form_ui
from dashboard.widgets.dataset_picker import dataset_picker_ui
from db import datasets as dq
from db import runs as rq
from db.auth import Permission
from db.errors import PermissionDenied, ValidationError
from db.models import JobStatus
from engine.config import PRESETS
from engine.errors import UserError
from engine.jobs.queue import submit_train
from engine.services.views import run_row

LAUNCHED = "train_launched"  # {"job_id", "run_id", "dataset", "model"} of this session's last launch

page_header("Train", "Training learns what OK parts look like from the OK images of the train split, "
            "then scores the labelled test images. It runs as a background job.")
factory = sessions()
with factory.begin() as s:
    counts = dq.dataset_counts(s)
if not counts:
    st.info("There is no dataset to train on yet.", icon=":material/info:")
    st.page_link("dashboard/pages/datasets.py", label="Import images on the Datasets page",
                 icon=":material/photo_library:")
    st.stop()

c1, c2, c3 = st.columns([2, 2, 2])
with c1:
    name = dataset_picker_ui([c.name for c in counts], key="train_dataset")
ds = next(c for c in counts if c.name == name)
model = c2.radio("Model family", list(MODEL_NAMES), format_func=MODEL_NAMES.__getitem__, key="train_model",
                 horizontal=True, help="Both learn from OK images only. DFR reconstructs pretrained "
                 "EfficientNet features (usually stronger); the autoencoder reconstructs pixels (its default "
                 "judges the reconstruction in pretrained features).")
presets = [name for name, p in PRESETS.items() if p.model == model]
preset = c3.selectbox("Preset", presets, key=f"train_preset_{model}",
                      help="Starting values; every field below can be changed.")
st.caption(PRESETS[preset].description)

m1, m2, m3, m4 = st.columns(4)
m1.metric("Train OK images", ds.train_ok, border=True, help="What the model learns from (a share is held out for "
          "the OK-only threshold).")
m2.metric("Test OK images", ds.test_ok, border=True)
m3.metric("Test NOK images", ds.test_nok, border=True)
m4.metric("NOK masks", ds.masks, border=True, help="Needed for pixel AUROC / AUPRO.")
if ds.train_ok == 0:
    st.warning(f"Dataset **{ds.name}** has no OK images in the train split: label some images OK with "
               "split Train on the Datasets page first.", icon=":material/warning:")
elif ds.test_ok + ds.test_nok == 0:
    st.warning("No labelled test images: the model will train but cannot be evaluated.",
               icon=":material/warning:")

st.subheader("Parameters", anchor=False)
overrides = config_form_ui(model, preset, key=f"train_cfg_{model}")
if overrides:
    st.caption("Changed from the preset: " + ", ".join(f"`{k}={v}`" for k, v in sorted(overrides.items())))
else:
    st.caption(f"Preset values as they are (`{preset}`).")

with factory.begin() as s:
    runs = [run_row(s, r) for r in rq.list_runs(s, dataset_id=ds.id, limit=50)]
parents: dict[int | None, str] = {None: "— none —"} | {
    r["id"]: f"Run {r['id']} · {r['model'].upper()} ({r['preset']}) · image AUROC {fmt_auroc(r['image_auroc'])}"
    for r in runs if r["status"] == JobStatus.SUCCEEDED}
with st.form("train_launch", border=False):
    f1, f2 = st.columns([1, 2])
    parent = f1.selectbox("Retrains run (optional)", list(parents), format_func=parents.__getitem__,
                          key="train_parent", help="Link the new run to the one it improves on (e.g. after "
                          "correcting labels); Results compares the two on their common test images.")
    note = f2.text_input("Note (optional)", key="train_note",
                         placeholder="e.g. relabelled 3 false positives as OK")
    launch = st.form_submit_button("Launch training", icon=":material/rocket_launch:", type="primary",
                                   disabled=not can(Permission.JOBS))
role_note(Permission.JOBS, "launch trainings (engineer or admin)")

if launch:
    try:
        with factory.begin() as s:
            job, run = submit_train(s, dataset=ds.name, model=model, preset=preset, overrides=overrides,
                                    actor=actor(), parent_run_id=parent, note=note.strip() or None)
            st.session_state[LAUNCHED] = {"job_id": job.id, "run_id": run.id, "dataset": ds.name, "model": model}
    except (UserError, PermissionDenied, ValidationError) as e:
        st.error(f"Training not started: {e}", icon=":material/error:")
    else:
        st.session_state[SELECTED_JOB] = st.session_state[LAUNCHED]["job_id"]
        st.session_state.pop("_worker_checked", None)  # a new job should not wait for the 30 s check
        keep_worker_running()

if (last := st.session_state.get(LAUNCHED)) is not None:
    with st.container(border=True):
        st.success(f"Queued **job {last['job_id']}**: training run {last['run_id']} "
                   f"({MODEL_NAMES[last['model']]}) on **{last['dataset']}**, then its evaluation.",
                   icon=":material/check_circle:")
        st.page_link("dashboard/pages/jobs.py", label=f"Follow job {last['job_id']} on the Jobs page",
                     icon=":material/pending_actions:", query_params={"job": str(last["job_id"])})
