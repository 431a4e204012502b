"""Jobs: every training / evaluation job, following running ones live; cancel, retry, results."""

from __future__ import annotations

import streamlit as st

from dashboard.state import SELECTED_JOB, SELECTED_RUN, actor, can, keep_worker_running, sessions
from dashboard.ui import flash, page_header, query_int, show_flashes
from dashboard.widgets.jobs_table import job_card_ui, job_detail_ui, job_title, jobs_table_ui
from db import jobs as jq
from db.auth import Permission
from db.errors import PermissionDenied
from db.models import JobStatus
from engine.errors import UserError
from engine.jobs.launch import worker_alive
from engine.jobs.queue import cancel_job, retry_job

POLL_S = 2.0

page_header("Jobs", "Training and evaluation run in the background: a local worker runs one job at a time, "
            "a Ray worker as many at once as its cluster has free GPUs (or CPUs) for. "
            "This page follows them by itself while any is queued or running.")
show_flashes()
factory = sessions()
if (from_url := query_int("job")) is not None and st.session_state.get("_jobs_url") != from_url:
    st.session_state["_jobs_url"] = st.session_state[SELECTED_JOB] = from_url
with factory.begin() as s:
    polling = bool(jq.active_jobs(s))


def act(action: str | None, job_id: int, run_id: int | None) -> None:
    """Apply a card's button; full reruns where the set of active jobs changes."""
    if action is None:
        return
    if action == "details":
        st.session_state[SELECTED_JOB] = job_id
        st.rerun(scope="fragment")
    if action == "results" and run_id is not None:
        st.session_state[SELECTED_RUN] = run_id
        st.switch_page("dashboard/pages/results.py", query_params={"run": str(run_id)})
    try:
        with factory.begin() as s:
            if action == "cancel":
                job = cancel_job(s, job_id, actor())
                flash(f"Job {job_id} cancelled." if job.status == JobStatus.CANCELLED
                      else f"Cancel requested: the worker stops job {job_id} shortly.")
            elif action == "retry":
                new = retry_job(s, job_id, actor())
                st.session_state[SELECTED_JOB] = new.id
                flash(f"Job {job_id} queued again as job {new.id}.")
    except (UserError, PermissionDenied) as e:
        st.session_state["_jobs_error"] = str(e)
    if action == "retry":
        st.session_state.pop("_worker_checked", None)
        keep_worker_running()
    st.rerun()


@st.fragment(run_every=POLL_S if polling else None)
def live() -> None:
    with factory.begin() as s:
        entries = jq.jobs_with_context(s, limit=300)
    active = sorted((e for e in entries if e[0].status in jq.ACTIVE),
                    key=lambda e: (e[0].status != JobStatus.RUNNING, e[0].id))
    if polling and not active:
        st.rerun()  # everything finished: redraw the page once, without the timer
    if err := st.session_state.pop("_jobs_error", None):
        st.error(err, icon=":material/error:")
    if not entries:
        st.info("No jobs yet. Launch a training on the Train page.", icon=":material/info:")
        st.page_link("dashboard/pages/train.py", label="Go to Train", icon=":material/model_training:")
        return

    st.subheader(f"Running and queued ({len(active)})", anchor=False)
    if active and not worker_alive(factory):
        st.warning("No job worker is running, so queued jobs wait. The dashboard starts one within 30 s; "
                   "or run `prefilter-qa worker` on the server.", icon=":material/warning:")
    if not active:
        st.caption("Nothing is running.")
    queued_ahead = 0
    for job, run, dataset in active:
        action = job_card_ui(job, run, dataset, key="card",
                             queue_position=queued_ahead if job.status == JobStatus.QUEUED else None,
                             can_act=can(Permission.JOBS))
        queued_ahead += job.status == JobStatus.QUEUED
        act(action, job.id, run.id if run else None)

    st.subheader("All jobs", anchor=False)
    jobs_table_ui(entries)

    by_id = {e[0].id: e for e in entries}
    ids = list(by_id)
    wanted = st.session_state.get(SELECTED_JOB)  # set only by a choice: Details, the URL, the picker
    default = wanted if wanted in by_id else (active[0][0].id if active else ids[0])
    st.subheader("Job details", anchor=False)
    chosen = st.selectbox("Job", ids, index=ids.index(default), label_visibility="collapsed",
                          format_func=lambda i: f"{job_title(*by_id[i])} — {by_id[i][0].status}")
    if chosen != default:  # picked here; otherwise the details follow the running job
        st.session_state[SELECTED_JOB] = chosen
    job, run, dataset = by_id[chosen]
    with st.container(border=True):
        act(job_detail_ui(job, run, dataset, key="detail", can_act=can(Permission.JOBS)), job.id,
            run.id if run else None)


live()
