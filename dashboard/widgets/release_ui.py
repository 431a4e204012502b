"""Thresholds page: release the run's active threshold to the line (a background job exports the
bundle), and the run's releases with their bundle zip for download."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard.state import SELECTED_JOB, actor, can, sessions, workspace
from db import releases as relq
from db.auth import Permission
from db.errors import PermissionDenied, ValidationError
from db.models import JobStatus
from engine.errors import UserError
from engine.jobs.queue import submit_release
from engine.services.releases import zip_path


def _release(run_id: int, note: str) -> None:
    try:
        with sessions().begin() as s:
            job, release_id = submit_release(s, run_id=run_id, actor=actor(), note=note.strip() or None)
            job_id = job.id
    except (UserError, PermissionDenied, ValidationError) as exc:
        st.session_state[f"release_msg_{run_id}"] = ("error", f"Not released: {exc}")
        return
    st.session_state[SELECTED_JOB] = job_id
    st.session_state[f"release_msg_{run_id}"] = (
        "success", f"Release {release_id} queued as job {job_id}: the model is exported, checked against "
                   "torch on test images, and bundled with the active threshold.")


def release_ui(run_id: int, has_threshold: bool) -> None:
    """Release form, then the run's releases (newest first) with a download of the chosen one."""
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    note = c1.text_input("Release note", key=f"release_note_{run_id}", placeholder="e.g. line 3, from the March batch")
    c2.button("Release to the line", icon=":material/rocket_launch:", key=f"release_{run_id}", width="stretch",
              disabled=not has_threshold or not can(Permission.RELEASES), on_click=lambda: _release(run_id, note),
              help="Exports the model with the active threshold as a bundle for `prefilter-qa-line` "
                   "(an industrial PC without torch scores parts with exactly these verdicts).")
    if (msg := st.session_state.get(f"release_msg_{run_id}")) is not None:
        (st.success if msg[0] == "success" else st.error)(msg[1])
        st.page_link("dashboard/pages/jobs.py", label="Follow it on the Jobs page", icon=":material/pending_actions:")
    with sessions().begin() as s:
        rows = relq.list_releases(s, run_id)
        table = [{"release": r.id, "status": r.status, "threshold": r.threshold_id, "by": r.created_by,
                  "at": f"{r.created_at:%Y-%m-%d %H:%M}", "bundle": (r.bundle_sha256 or "")[:12],
                  "note": r.note or "", "problem": r.error or ""} for r in rows]
        done = {r.id: r.bundle_sha256 for r in rows if r.status == JobStatus.SUCCEEDED}
    if not table:
        st.caption("No release of this run yet.")
        return
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")
    if not done:
        return
    d1, d2 = st.columns([3, 1], vertical_alignment="bottom")
    pick = d1.selectbox("Bundle to download", list(done), key=f"release_pick_{run_id}",
                        format_func=lambda i: f"release {i} · bundle {done[i][:12]}")
    path: Path = zip_path(workspace(), pick)
    if path.is_file():
        d2.download_button("Download zip", data=path.read_bytes(), file_name=path.name, mime="application/zip",
                           icon=":material/download:", key=f"release_dl_{run_id}", width="stretch")
    else:
        d2.warning("Its zip is missing from the workspace.")
