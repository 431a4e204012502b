"""Process-wide resources and session conventions shared by the pages."""

from __future__ import annotations

import time

import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from engine.jobs.launch import ensure_worker
from engine.jobs.store import open_workspace
from engine.workspace import Workspace

USER_KEY = "user"
WORKER_CHECK_S = 30.0


@st.cache_resource
def _resources(home: str | None) -> tuple[Workspace, sessionmaker[Session]]:
    return open_workspace(home)


def workspace() -> Workspace:
    return _resources(None)[0]


def sessions() -> sessionmaker[Session]:
    """The database session factory (one engine per server process)."""
    return _resources(None)[1]


def user() -> str:
    """The name recorded on masks, thresholds and reviews (sidebar, remembered in the session)."""
    return st.session_state.get(USER_KEY) or "anonymous"


def user_ui() -> str:
    name = st.sidebar.text_input("Your name", key=USER_KEY, placeholder="recorded on your edits",
                                 help="Recorded as author of masks, thresholds and reviews.")
    return name.strip() or "anonymous"


def keep_worker_running() -> None:
    """Start a job worker if none serves the database (checked at most every 30 s per session)."""
    now = time.monotonic()
    if now - st.session_state.get("_worker_checked", -WORKER_CHECK_S) < WORKER_CHECK_S:
        return
    st.session_state["_worker_checked"] = now
    if ensure_worker(workspace(), sessions()):
        st.toast("Started a background job worker.")
