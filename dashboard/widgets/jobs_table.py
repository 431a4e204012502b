"""Job displays: the table of all jobs, a compact card per active job, and one job in detail."""

from __future__ import annotations

from datetime import datetime, timezone

import streamlit as st

from dashboard.ui import STATUS_ICONS, elapsed, fmt_duration, fmt_when, status_badge, tail_lines
from db.models import Job, JobStatus, Run

LOG_LINES = 30


def job_title(job: Job, run: Run | None, dataset: str | None) -> str:
    what = f"run {run.id} · {run.model.upper()} ({run.preset})" if run else "no run"
    return f"Job {job.id} · {job.kind} · {what}" + (f" · {dataset}" if dataset else "")


def eta_left(job: Job, now: datetime | None = None) -> float | None:
    """The job's last ETA, minus the time since it was reported (the heartbeat)."""
    if job.status != JobStatus.RUNNING or job.eta_s is None:
        return None
    since = elapsed(job.heartbeat_at, now) or 0.0
    return max(0.0, job.eta_s - since)


def job_node(job: Job) -> str:
    """Where the job ran: the cluster node (Ray executor) or the host of the local worker's child."""
    return job.node or job.child_host or ""


def log_tail(job: Job, n: int = LOG_LINES) -> tuple[str, list[str]] | None:
    """The job's log from the workspace, else (a Ray job) Ray's own log of it: (where, lines)."""
    lines = tail_lines(job.log_path, n)
    if lines is not None:
        return f"`{job.log_path}`", lines
    if job.executor == "ray" and job.external_id:
        from engine.jobs.ray_cluster import ray_log_tail

        if (lines := ray_log_tail(job.external_id, n)) is not None:
            return f"Ray's log of `{job.external_id}` (no log in the workspace)", lines
    return None


def jobs_table_ui(entries: list[tuple[Job, Run | None, str | None]]) -> None:
    now = datetime.now(timezone.utc)
    rows = [{
        "Job": job.id, "Kind": job.kind, "Status": f"{job.status}", "Progress": job.progress,
        "Run": run.id if run else None, "Model": f"{run.model} ({run.preset})" if run else "",
        "Dataset": dataset or "", "By": job.created_by, "Created": fmt_when(job.created_at, now),
        "Duration": fmt_duration(elapsed(job.started_at, job.finished_at)) if job.started_at else "–",
        "Node": job_node(job), "GPU": job.gpu or "",
        "Error": (job.error or "")[:120],
    } for job, run, dataset in entries]
    st.dataframe(rows, hide_index=True, width="stretch", height=min(420, 38 + 35 * max(1, len(rows))),
                 column_config={
                     "Job": st.column_config.NumberColumn(format="%d", width="small"),
                     "Status": st.column_config.TextColumn(width="medium"),  # "succeeded" in full
                     "Run": st.column_config.NumberColumn(format="%d", width="small"),
                     "Progress": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent"),
                     "Error": st.column_config.TextColumn(width="large"),
                 })


def progress_ui(job: Job, queue_position: int | None = None) -> None:
    """Progress bar with the job's message and time left (or why it waits)."""
    if job.status == JobStatus.RUNNING:
        left = eta_left(job)
        eta = f" · about {fmt_duration(left)} left" if left is not None else ""
        cancel = " · cancel requested" if job.cancel_requested else ""
        st.progress(min(max(job.progress, 0.0), 1.0),
                    text=f"{job.progress:.0%} · {job.message or 'starting'}{eta}{cancel}")
    elif job.status == JobStatus.QUEUED:
        ahead = f" ({queue_position} ahead)" if queue_position else ""
        st.progress(0.0, text=f"waiting for a worker{ahead}")
    else:
        st.progress(min(max(job.progress, 0.0), 1.0), text=f"{job.status} · {job.progress:.0%}")


def job_card_ui(job: Job, run: Run | None, dataset: str | None, *, key: str,
                queue_position: int | None = None, can_act: bool = True) -> str | None:
    """A compact card for an active job; returns "cancel" or "details" when clicked (cancel is
    disabled unless `can_act`: the signed-in role may cancel)."""
    with st.container(border=True):
        top, b1, b2 = st.columns([6, 1, 1], vertical_alignment="center")
        where = " · ".join(filter(None, (job_node(job), f"GPU {job.gpu}" if job.gpu else None, job.device)))
        when = (f"started {fmt_when(job.started_at)} on {where or job.worker or '…'}" if job.started_at
                else f"queued {fmt_when(job.created_at)} by {job.created_by}")
        top.markdown(f"**{job_title(job, run, dataset)}** {status_badge(job.status)}  \n:gray[{when}]")
        action = None
        if b1.button("Details", key=f"{key}_details_{job.id}", width="stretch"):
            action = "details"
        if b2.button("Cancel", key=f"{key}_cancel_{job.id}", width="stretch", icon=":material/cancel:",
                     disabled=job.cancel_requested or not can_act, help=None if can_act else "Your role cannot cancel or retry jobs (engineer or admin)."):
            action = "cancel"
        progress_ui(job, queue_position)
    return action


def job_detail_ui(job: Job, run: Run | None, dataset: str | None, *, key: str, can_act: bool = True) -> str | None:
    """Everything about one job; returns "cancel", "retry" or "results" when clicked (cancel and
    retry are disabled unless `can_act`)."""
    st.markdown(f"#### {job_title(job, run, dataset)} {status_badge(job.status)}")
    progress_ui(job)
    facts = [f"created {fmt_when(job.created_at)} by {job.created_by}"]
    if job.started_at:
        facts.append(f"started {fmt_when(job.started_at)}")
    if job.finished_at:
        facts.append(f"finished {fmt_when(job.finished_at)} after "
                     f"{fmt_duration(elapsed(job.started_at, job.finished_at))}")
    if job_node(job):
        facts.append(f"node {job_node(job)}" + (f" (Ray job {job.external_id})" if job.external_id else ""))
    if job.gpu:
        facts.append(f"GPU {job.gpu}")
    if job.device:
        facts.append(f"device {job.device}")
    if job.retry_of:
        facts.append(f"retry of job {job.retry_of}")
    st.caption(" · ".join(facts))
    if job.status == JobStatus.FAILED and job.error:
        st.error(f"**Failed:** {job.error}", icon=STATUS_ICONS[JobStatus.FAILED])
    elif job.status == JobStatus.CANCELLED:
        st.warning(f"Cancelled{': ' + job.error if job.error else ''}", icon=STATUS_ICONS[JobStatus.CANCELLED])
    action = None
    with st.container(horizontal=True):
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING) and st.button(
                "Cancel job", key=f"{key}_cancel", icon=":material/cancel:",
                disabled=job.cancel_requested or not can_act, help=None if can_act else "Your role cannot cancel or retry jobs (engineer or admin)."):
            action = "cancel"
        if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) and st.button(
                "Retry", key=f"{key}_retry", icon=":material/replay:", disabled=not can_act,
                help="Queue the same work again as a new job (this one keeps its error)." if can_act
                else "Your role cannot cancel or retry jobs (engineer or admin)."):
            action = "retry"
        if job.status == JobStatus.SUCCEEDED and run is not None and st.button(
                "Open results", key=f"{key}_results", icon=":material/insights:", type="primary"):
            action = "results"
    found = log_tail(job)
    if found is None:
        st.caption("No log yet." if job.status == JobStatus.QUEUED else "No log file for this job.")
    else:
        where, lines = found
        st.caption(f"Last {len(lines)} lines of {where}")
        st.code("\n".join(lines) or "(empty)", language=None, wrap_lines=True)
    return action
